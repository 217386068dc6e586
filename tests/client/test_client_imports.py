"""The client stands alone: importing it (and its CLI) pulls in no service, training or torch code."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import client, client.cli
loaded = sorted({name.split('.')[0] for name in sys.modules} & {'service', 'training', 'torch', 'onnxruntime'})
print(','.join(loaded))
"""


def test_importing_client_pulls_in_no_service_training_or_torch() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""

"""Model families; importing this package registers each of them."""

from training.models.codec import CodecConfig, CompressionAutoencoder
from training.models.contrastive import ContrastiveRecurrentAutoencoder, ContrastiveRecurrentConfig
from training.models.conv import ConvAutoencoder, ConvConfig
from training.models.hyperprior import HyperpriorCodec, HyperpriorCodecConfig
from training.models.recurrent import RecurrentAutoencoder, RecurrentConfig

__all__ = [
    "CodecConfig",
    "CompressionAutoencoder",
    "ContrastiveRecurrentAutoencoder",
    "ContrastiveRecurrentConfig",
    "ConvAutoencoder",
    "ConvConfig",
    "HyperpriorCodec",
    "HyperpriorCodecConfig",
    "RecurrentAutoencoder",
    "RecurrentConfig",
]

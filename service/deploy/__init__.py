"""Ways to deploy the service beyond `ae-serve`; each module imports its platform's packages itself.

Nothing else in `service` imports these modules, so the service never needs their platforms installed.
"""

"""Model families; importing this package registers every model."""
from ghostnets_jax.models import (g_ghostnet, ghostnet, multigrain, regnet, resnet,  # noqa: F401
                                  s_ghostnet)

"""Model families; importing this package registers every model."""
from ghostnets_jax.models import (g_ghostnet, ghostnet, multigrain, regnet, repghost,  # noqa: F401
                                  resnet, s_ghostnet)

"""Model families; importing this package registers every model."""
from ghostnets_jax.models import (g_ghostnet, ghostnet, ghostnet_d,  # noqa: F401
                                  multigrain, regnet, repghost, resnet, s_ghostnet)

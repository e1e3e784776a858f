"""Model families; importing this package registers every model."""
from ghostnets_jax.models import ghostnet  # noqa: F401
from ghostnets_jax.models import multigrain  # noqa: F401
from ghostnets_jax.models import resnet  # noqa: F401
from ghostnets_jax.models import s_ghostnet  # noqa: F401

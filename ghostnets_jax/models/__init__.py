"""Model families; importing this package registers every model."""
from ghostnets_jax.models import ghostnet  # noqa: F401
from ghostnets_jax.models import repghost  # noqa: F401

"""Reusable blocks shared by the model families."""
from ghostnets_jax.layers.activations import get_act, hard_sigmoid, hard_swish, make_divisible
from ghostnets_jax.layers.checks import check_images
from ghostnets_jax.layers.conv import Conv2d, depthwise_conv2d, depthwise_impl, torch_padding
from ghostnets_jax.layers.conv_bn import ConvBN
from ghostnets_jax.layers.drop import DropPath
from ghostnets_jax.layers.ghost import DFCAttention, GhostModule, GhostModuleV2
from ghostnets_jax.layers.norm import BatchNorm, batch_norm_groups
from ghostnets_jax.layers.pool import avg_pool_2x2, global_avg_pool, nearest_resize
from ghostnets_jax.layers.squeeze_excite import SqueezeExcite

__all__ = ['BatchNorm', 'batch_norm_groups', 'Conv2d', 'ConvBN', 'DFCAttention', 'DropPath', 'GhostModule',
           'GhostModuleV2', 'SqueezeExcite', 'avg_pool_2x2', 'check_images', 'depthwise_conv2d',
           'depthwise_impl', 'get_act', 'global_avg_pool', 'hard_sigmoid', 'hard_swish',
           'make_divisible', 'nearest_resize', 'torch_padding']

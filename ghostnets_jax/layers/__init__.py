"""Reusable blocks shared by the model families."""
from ghostnets_jax.layers.activations import get_act, hard_sigmoid, hard_swish, make_divisible
from ghostnets_jax.layers.bottleneck import RESNET_BLOCK, BlockSpec, Bottleneck
from ghostnets_jax.layers.checks import check_images
from ghostnets_jax.layers.conv import (Conv2d, conv_kernels, depthwise_conv2d, depthwise_impl,
                                       grouped_conv2d, grouped_impl, pointwise_conv2d,
                                       pointwise_impl, torch_padding)
from ghostnets_jax.layers.conv_bn import ConvBN
from ghostnets_jax.layers.drop import DropPath
from ghostnets_jax.layers.g_ghost import CHEAP_OPS, GGhostStage, GhostXStage, g_ghost_channels
from ghostnets_jax.layers.fusion import (FusionRule, fold_bn, identity_kernel, merge_branches,
                                         pad_kernel, register_fusion_rule)
from ghostnets_jax.layers.gem import GeM, gem_pool, l2_normalize
from ghostnets_jax.layers.ghost import DFCAttention, GhostModule, GhostModuleV2, RepGhostModule
from ghostnets_jax.layers.lowering import export_lowering, exporting
from ghostnets_jax.layers.norm import BatchNorm, batch_norm_groups, frozen_batch_norm
from ghostnets_jax.layers.pool import avg_pool_2x2, global_avg_pool, max_pool_3x3_s2, nearest_resize
from ghostnets_jax.layers.rep_conv import RepConvBN
from ghostnets_jax.layers.squeeze_excite import SqueezeExcite

__all__ = ['BatchNorm', 'BlockSpec', 'Bottleneck', 'CHEAP_OPS', 'Conv2d', 'ConvBN', 'DFCAttention',
           'DropPath', 'FusionRule', 'GeM', 'GGhostStage', 'GhostXStage', 'GhostModule', 'GhostModuleV2',
           'RESNET_BLOCK', 'RepConvBN', 'RepGhostModule', 'SqueezeExcite', 'avg_pool_2x2',
           'check_images',
           'conv_kernels', 'depthwise_conv2d', 'fold_bn', 'depthwise_impl', 'export_lowering', 'exporting', 'frozen_batch_norm',
           'g_ghost_channels', 'gem_pool', 'get_act', 'grouped_conv2d', 'grouped_impl',
           'global_avg_pool', 'hard_sigmoid', 'hard_swish', 'identity_kernel', 'l2_normalize',
           'make_divisible', 'merge_branches',
           'max_pool_3x3_s2', 'nearest_resize', 'pad_kernel', 'pointwise_conv2d', 'pointwise_impl',
           'register_fusion_rule', 'torch_padding']

"""Command line: ``python -m ghostnets_jax.export {onnx,mindspore,lite,mnn} ...``.

  onnx       MODEL -> model.onnx (deploy form, dynamic batch), checked with onnx.checker and
             onnxruntime vs JAX at batch 1 and 4
  mindspore  MODEL -> model.mindir + model.ckpt (fixed batch), MindSpore vs JAX, MINDIR loaded back
  lite       model.onnx -> model.mindir with MindSpore Lite's converter_lite, where installed
  mnn        MODEL -> model.mnn (ONNX through MNN's converter, dynamic batch), MNN vs JAX at batch 1 and 4

MODEL is --model NAME [--checkpoint FILE] (a PyTorch/MindSpore file, or random weights), or
--checkpoint WORKDIR of a training run (local or gs://): the run names its model, its
model_kwargs, classes and input size; --step best|latest|N and --weights auto|ema|raw pick the
checkpoint (auto: what `main.py --mode=eval` evaluates).

Exit status: 0 on success, 2 on bad input or a failed check, with one message and nothing
written; any other error is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _model_args(p: argparse.ArgumentParser, out_example: str) -> None:
  p.add_argument('--model', help='registry name, e.g. ghostnet_100 (optional with a run workdir as '
                 '--checkpoint; then it must be the run\'s model)')
  p.add_argument('--checkpoint', help='weights: the --workdir of a training run (local or gs://), a '
                 'PyTorch .pth/.pt/.bin/.safetensors or a MindSpore .ckpt file; random weights if omitted')
  p.add_argument('--step', default='latest', help="a run's checkpoint: latest (default), best or a step")
  p.add_argument('--weights', choices=('auto', 'ema', 'raw'), default='auto',
                 help="a run's weights: auto (default; EMA when the run evaluates EMA), ema or raw")
  p.add_argument('--no-deploy', dest='deploy', action='store_false',
                 help='export the training form instead of the re-parameterized one')
  p.add_argument('--layout', choices=('NCHW', 'NHWC'), default='NCHW', help='input layout (default NCHW)')
  p.add_argument('--num-classes', type=int, help="classifier size (default: the checkpoint's, else the "
                 "registry model's)")
  p.add_argument('--input-size', type=int, help="image size (default: the model's)")
  p.add_argument('--slice-as-conv', action='store_true',
                 help='channel slices as 1x1 convolutions (faster on Ascend)')
  p.add_argument('--out', required=True, help=f'output file, e.g. {out_example}')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m ghostnets_jax.export', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  p = sub.add_parser('onnx', help='export to ONNX, verified with onnxruntime')
  _model_args(p, 'model.onnx')
  p = sub.add_parser('mindspore', help='export to MINDIR (+ .ckpt) through a MindSpore network')
  _model_args(p, 'model.mindir')
  p.add_argument('--batch-size', type=int, default=1, help='fixed batch size of the MINDIR (default 1)')
  p.add_argument('--no-ckpt', dest='ckpt', action='store_false', help='do not write the .ckpt')
  p = sub.add_parser('lite', help='ONNX -> MINDIR with converter_lite (MindSpore Lite)')
  p.add_argument('--onnx', required=True, help='an ONNX file from `python -m ghostnets_jax.export onnx`')
  p.add_argument('--out', required=True, help='output MINDIR, e.g. model.mindir')
  p.add_argument('--batch-size', type=int, default=1, help='fixed batch size (default 1)')
  p.add_argument('--keep-slices', dest='slice_as_conv', action='store_false',
                 help='keep channel slices (default: rewrite them as 1x1 convolutions)')
  p.add_argument('--converter', help='path of converter_lite (default: $MSLITE_CONVERTER, then PATH)')
  p.add_argument('--converter-arg', dest='extra', action='append', default=[],
                 help='extra argument for converter_lite (repeatable), e.g. --converter-arg=--configFile=a.cfg')
  p = sub.add_parser('mnn', help='export to MNN (ONNX + MNN\'s converter), verified with MNN')
  _model_args(p, 'model.mnn')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  from ghostnets_jax import errors, storage
  try:
    if args.command == 'lite':
      from ghostnets_jax.export.lite import convert
      summary = convert(args.onnx, args.out, batch_size=args.batch_size, slice_as_conv=args.slice_as_conv,
                        converter=args.converter, extra_args=args.extra)
      print(f'{args.onnx} -> {args.out} (prepared graph: {summary["prepared"]}, rewrite max diff '
            f'{summary["rewrite_max_abs_diff"]:.2e})')
      return 0
    from ghostnets_jax.export import pipeline
    if args.checkpoint:
      storage.check_reachable(args.checkpoint, '--checkpoint')
    common = dict(checkpoint=args.checkpoint, deploy=args.deploy, layout=args.layout,
                  num_classes=args.num_classes, input_size=args.input_size,
                  slice_as_conv=args.slice_as_conv, step=args.step, weights=args.weights)
    if args.command == 'onnx':
      report = pipeline.export_onnx_file(args.model, args.out, **common)
    elif args.command == 'mnn':
      from ghostnets_jax.export.mnn import export_mnn_file
      report = export_mnn_file(args.model, args.out, **common)
    else:
      report = pipeline.export_mindspore_file(args.model, args.out, batch_size=args.batch_size,
                                              ckpt=args.ckpt, **common)
  # UserError: ours (checkpoint mismatch, corrupt or foreign run, bucket, failed check); the
  # built-in ones: an unknown model name, a missing file or package, an operator the route lacks
  except (errors.UserError, ValueError, FileNotFoundError, NotImplementedError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return errors.EXIT_CODE
  print(report)
  return 0


if __name__ == '__main__':
  sys.exit(main())

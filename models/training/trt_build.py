"""Deploy-time TensorRT builds, INT8 calibration included: ``python -m models.training.trt_build``.

The engine builder, cache key and profile planning are serving's
(:mod:`models.serving.trt_engine`), so a GPU worker can build a missing fp16 engine itself. An
INT8 engine is calibrated on real tokenised texts from the training splits, which only this
module reads (:func:`default_calibration_texts`), so INT8 engines are built here, ahead of time.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.serving import artefacts
from models.serving.tokenizer import load_tokenizer, tokenize
from models.serving.trt_engine import (
    DEFAULT_MAX_BATCH_SIZE,
    INPUT_NAMES,
    build_or_load_engine,
    require_tensorrt,
    trt,
)

__all__ = ["TextCalibrator", "default_calibration_texts", "main"]

log = logging.getLogger(__name__)

_CalibratorBase: Any = trt.IInt8EntropyCalibrator2 if trt is not None else object


class TextCalibrator(_CalibratorBase):
    """INT8 entropy calibration fed by real tokenised texts (implicit quantisation).

    TensorRT 10.1 deprecates ``IInt8*Calibrator`` and implicit INT8 in favour of explicit
    quantisation (Q/DQ nodes in the ONNX graph, e.g. from NVIDIA ModelOpt); this still works on
    TRT 10 and is kept as the optional route. Every batch is padded to ``(batch_size,
    seq_len)``, the fixed shape of the calibration profile :meth:`EngineBuilder.create_engine`
    sets. The scales are cached in ``cache_file`` so a rebuild skips calibration.
    """

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        cache_file: Path,
        *,
        batch_size: int = 16,
        seq_len: int = 128,
        max_batches: int = 32,
    ) -> None:
        require_tensorrt()
        _CalibratorBase.__init__(self)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.cache_file = Path(cache_file)
        token_ids = tokenize(tokenizer, list(texts)[: batch_size * max_batches], seq_len)
        rows = len(token_ids) - len(token_ids) % batch_size
        if rows == 0:
            raise ValueError(f"calibration needs at least {batch_size} texts")
        ids = torch.full((rows, seq_len), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, seq_len), dtype=torch.long)
        for row, row_ids in enumerate(token_ids[:rows]):
            ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
            mask[row, : len(row_ids)] = 1
        self._host = {"input_ids": ids, "attention_mask": mask}
        self._device = {
            name: torch.empty((batch_size, seq_len), dtype=torch.long, device="cuda")
            for name in INPUT_NAMES
        }
        self._next_row = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> list[int] | None:
        """Device pointers of the next batch, in ``names`` order; ``None`` when exhausted."""
        start = self._next_row
        if start >= self._host["input_ids"].shape[0]:
            return None
        for name in INPUT_NAMES:
            self._device[name].copy_(self._host[name][start : start + self.batch_size])
        self._next_row += self.batch_size
        return [int(self._device[name].data_ptr()) for name in names]

    def read_calibration_cache(self) -> bytes | None:
        if self.cache_file.is_file():
            log.info("using INT8 calibration cache %s", self.cache_file)
            return self.cache_file.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_bytes(bytes(cache))
        log.info("wrote INT8 calibration cache %s", self.cache_file)


def default_calibration_texts(limit: int = 512) -> list[str]:
    """Training-split Fine Foods reviews and SMS, interleaved: the traffic the model sees."""
    from models.training.data import fine_foods, sms_spam

    reviews = [row.text for row in fine_foods("train")[: limit // 2]]
    messages = [row.text for row in sms_spam("train")[: limit // 2]]
    return [text for pair in zip(reviews, messages, strict=False) for text in pair]


def text_calibrator(engine_path: Path) -> TextCalibrator:
    """The calibrator for ``engine_path``, its scales cached beside the engine."""
    return TextCalibrator(
        default_calibration_texts(), load_tokenizer(), engine_path.with_suffix(".calibration.cache")
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Deploy-time build: ``python -m models.training.trt_build [--precision fp16] [--force]``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--precision", choices=["fp16", "int8", "fp32"], default="fp16")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from models.training.export import export_onnx

    artefact_path = artefacts.require_built(artefacts.artefact_dir())
    path = build_or_load_engine(
        export_onnx(artefact_path),
        artefact_path.name,
        precision=args.precision,
        max_batch_size=args.max_batch_size,
        force=args.force,
        calibrator=text_calibrator if args.precision == "int8" else None,
    )
    print(path)


if __name__ == "__main__":
    main()

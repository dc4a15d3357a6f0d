"""What a run writes for TensorBoard, read back from the event files and from a real TensorBoard server."""

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from logs import write_interaction_log
from tf_autosam import main as cli

TINY_FLAGS = ["--epochs=2", "--max_len=8", "--hidden_size=16", "--num_blocks=1", "--num_heads=2", "--ffn_size=16",
              "--batch_size=64", "--eval_batch_size=64", "--verbose=0", "--sampler_warmup_epochs=0", "--no-export"]
TRAIN_TAGS = {"epoch_loss", "epoch_recommendation_loss", "epoch_policy_loss", "epoch_keep_rate",
              "epoch_future_reward", "epoch_perplexity_reward"}
VALIDATION_TAGS = {"epoch_NDCG@10", "epoch_Recall@10", "epoch_MRR@10", "epoch_NDCG@20", "epoch_Recall@20"}
IMAGE_TAGS = {"sampler/keep_probability_panel", "sampler/keep_rate_vs_popularity"}
HISTOGRAM_TAGS = {"sampler/keep_probability", "sampler/reward", "sampler/future_reward", "sampler/perplexity_reward"}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    folder = tmp_path_factory.mktemp("board")
    write_interaction_log(folder / "log.csv", users=50, items=30, seed=0, max_length=14)
    run_dir = folder / "run"
    assert cli.main(["--dataset=csv", f"--data_path={folder / 'log.csv'}", f"--data_dir={folder / 'cache'}",
                     f"--run_dir={run_dir}", *TINY_FLAGS]) == 0
    return run_dir / "tensorboard"


def tensors(folder):
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return {tag: [tf.make_ndarray(event.tensor_proto) for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


def test_scalars_of_every_loss_reward_and_validation_metric_are_finite_per_epoch(board):
    train, validation = tensors(board / "train"), tensors(board / "validation")
    assert TRAIN_TAGS <= set(train) and VALIDATION_TAGS <= set(validation)
    for values in [*(train[t] for t in TRAIN_TAGS), *(validation[t] for t in VALIDATION_TAGS)]:
        assert len(values) == 2 and all(math.isfinite(float(v)) for v in values)
    assert all(0.0 <= float(v) <= 1.0 for v in train["epoch_keep_rate"])
    config = tensors(board / "config")["config"][0].item().decode()
    assert '"model": "autosam"' in config


def test_sampler_images_decode_and_histograms_hold_probabilities(board):
    sampler = tensors(board / "sampler")
    assert IMAGE_TAGS | HISTOGRAM_TAGS <= set(sampler)
    for tag in IMAGE_TAGS:
        width, height, png = sampler[tag][-1]
        image = tf.io.decode_png(png).numpy()
        assert image.shape == (int(height), int(width), 4) and image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 10  # a picture, not a blank canvas
    buckets = sampler["sampler/keep_probability"][-1]  # [bucket, (left, right, count)]
    assert buckets[:, 2].sum() > 0 and buckets[:, 0].min() >= 0.0 and buckets[:, 1].max() <= 1.0
    for tag in HISTOGRAM_TAGS:
        assert np.isfinite(sampler[tag][-1]).all()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch_json(url, deadline):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_tensorboard_server_serves_the_runs_scalars_and_images(board):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(board), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/data/plugin"
        deadline = time.monotonic() + 90
        scalars = fetch_json(f"{base}/scalars/tags", deadline)
        while "validation" not in scalars:  # the server loads runs in the background
            assert time.monotonic() < deadline
            time.sleep(0.5)
            scalars = fetch_json(f"{base}/scalars/tags", deadline)
        assert TRAIN_TAGS <= set(scalars["train"]) and "epoch_NDCG@10" in scalars["validation"]
        query = urllib.parse.urlencode({"run": "validation", "tag": "epoch_NDCG@10"})
        points = fetch_json(f"{base}/scalars/scalars?{query}", deadline)
        assert [step for _, step, _ in points] == [0, 1]
        images = fetch_json(f"{base}/images/tags", deadline)
        assert IMAGE_TAGS <= set(images["sampler"])
        query = urllib.parse.urlencode({"run": "sampler", "tag": "sampler/keep_probability_panel"})
        assert len(fetch_json(f"{base}/images/images?{query}", deadline)) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)

"""Server-side batching: the BatchQueue on its own, then a real gRPC server with --enable_batching."""
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.batching import BatchQueue
from svsgan_tf.data.synthetic import make_track
from svsgan_tf.separation.separator import Separator


def submit_all(queue, jobs, run_batch, run_one=None):
    """Submit (key, item) jobs from one thread each; return {item: result or the exception}."""
    results, threads = {}, []

    def submit(key, item):
        try:
            results[item] = queue.submit(key, item, run_batch, run_one or (lambda x: run_batch([x])[0]))
        except Exception as err:  # noqa: BLE001  (kept for the assertions)
            results[item] = err

    for key, item in jobs:
        threads.append(threading.Thread(target=submit, args=(key, item)))
        threads[-1].start()
        time.sleep(0.01)
    return results, threads


def run_while_busy(max_batch_size, jobs, run_batch, run_one=None, while_waiting=None):
    """Submit `jobs` while the one run slot is taken, then free it; return (queue, {item: outcome}).
    `while_waiting()` runs once every job waits."""
    slot = threading.Semaphore(1)
    queue = BatchQueue(max_batch_size=max_batch_size, timeout_s=0.0, slots=slot)
    slot.acquire()                                        # the model is busy
    results, threads = submit_all(queue, jobs, run_batch, run_one)
    if while_waiting is not None:
        time.sleep(0.2)
        while_waiting()
    slot.release()
    for thread in threads:
        thread.join(10)
    return queue, results


def test_requests_that_arrive_while_the_model_is_busy_form_one_batch():
    batches = []

    def run_batch(items):
        batches.append(list(items))
        return [10 * item for item in items]

    def nothing_ran_yet():
        assert batches == []                              # all five wait, in one open batch

    queue, results = run_while_busy(8, [("a", i) for i in range(5)], run_batch, while_waiting=nothing_ran_yet)
    assert batches == [[0, 1, 2, 3, 4]]
    assert results == {i: 10 * i for i in range(5)}
    assert queue.batch_sizes == {5: 1}


def test_batches_hold_one_key_and_at_most_max_batch_size():
    batches = []

    def run_batch(items):
        batches.append(list(items))
        return [str(item) for item in items]

    _, results = run_while_busy(2, [("even" if i % 2 == 0 else "odd", i) for i in range(7)], run_batch)
    assert results == {i: str(i) for i in range(7)}
    assert all(len(batch) <= 2 and len({item % 2 for item in batch}) == 1 for batch in batches), batches
    assert sorted(item for batch in batches for item in batch) == list(range(7))
    assert max(len(batch) for batch in batches) == 2


def test_a_failing_batch_runs_each_request_alone_and_only_the_bad_one_fails():
    def run_batch(items):
        if -1 in items:
            raise ValueError("a bad value in the batch")
        return [item + 1 for item in items]

    def run_one(item):
        if item == -1:
            raise ValueError("item -1 is bad")
        return item + 1

    _, results = run_while_busy(8, [("a", i) for i in (3, -1, 7)], run_batch, run_one)
    assert results[3] == 4 and results[7] == 8
    assert isinstance(results[-1], ValueError) and str(results[-1]) == "item -1 is bad"


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt or SystemExit in the leader's thread."""


class InterruptedSlot:
    """A run slot whose first acquisition is interrupted, then an ordinary lock."""

    def __init__(self):
        self.lock, self.calls = threading.Lock(), 0
        self.release = threading.Event()

    def __enter__(self):
        self.calls += 1
        if self.calls == 1:
            self.release.wait(10)                        # the followers join meanwhile
            raise Interrupt()
        self.lock.acquire()

    def __exit__(self, *exc):
        self.lock.release()


def test_an_interrupted_leader_fails_its_batch_without_hanging_and_the_key_stays_usable():
    slot = InterruptedSlot()
    queue = BatchQueue(max_batch_size=8, timeout_s=0.0, slots=slot)
    results, threads = {}, []

    def submit(item):
        try:
            results[item] = queue.submit("a", item, lambda items: list(items), lambda x: x)
        except BaseException as err:  # noqa: BLE001  (kept for the assertions)
            results[item] = err

    for item in range(3):
        threads.append(threading.Thread(target=submit, args=(item,)))
        threads[-1].start()
        time.sleep(0.05)
    slot.release.set()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert isinstance(results[0], Interrupt)                              # the leader's own
    assert all(isinstance(results[i], RuntimeError) and "interrupted" in str(results[i]) for i in (1, 2))
    assert queue.submit("a", 7, lambda items: [x + 1 for x in items], lambda x: x + 1) == 8


def test_a_lone_request_waits_at_most_the_timeout():
    queue = BatchQueue(max_batch_size=8, timeout_s=0.05)
    start = time.monotonic()
    assert queue.submit("a", 2, lambda items: [i * i for i in items], lambda i: i * i) == 4
    assert 0.04 <= time.monotonic() - start < 2.0
    assert queue.batch_sizes == {1: 1}
    with pytest.raises(ValueError):
        BatchQueue(max_batch_size=0)


def test_concurrent_grpc_requests_are_batched_and_each_gets_its_own_stems(tiny_model_dir, tmp_path):
    """A real server (build_server, loopback) with batching: concurrent requests of one shape share a
    call of separate_batch and each equals the local separation; a NaN request in the batch gets
    INVALID_ARGUMENT alone; a request of another shape and a separate_magnitude request still work."""
    from serving.server import build_server, load_servable
    from svsgan_tf.export.savedmodel import export_model

    base = tmp_path / "models" / "tiny"
    export_model(tiny_model_dir, str(base))
    queue = BatchQueue(max_batch_size=8, timeout_s=0.5)
    server, port = build_server({"tiny": load_servable("tiny", str(base))}, port=0, max_concurrent_runs=1,
                                batching=queue)
    server.start()
    separator = Separator.from_directory(tiny_model_dir)
    songs = [np.ascontiguousarray(make_track(seed, duration=1.0, sample_rate=8000).mixture.T) for seed in range(4)]
    songs.append(songs[0][:, :6000].copy())                # another shape: a batch of its own
    bad = songs[1].copy()
    bad[0, 10] = np.nan
    songs.append(bad)
    answers = [None] * len(songs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def call(i):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "tiny"
                request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(songs[i]))
                try:
                    response = stub.Predict(request, timeout=60)
                    answers[i] = {name: tf.make_ndarray(response.outputs[name]) for name in response.outputs}
                except grpc.RpcError as err:
                    answers[i] = err

            threads = [threading.Thread(target=call, args=(i,)) for i in range(len(songs))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            magnitude = predict_pb2.PredictRequest()
            magnitude.model_spec.name = "tiny"
            magnitude.model_spec.signature_name = "separate_magnitude"
            magnitude.inputs["magnitude"].CopyFrom(tf.make_tensor_proto(np.ones((2, 5, 129), np.float32)))
            assert stub.Predict(magnitude, timeout=60).outputs["vocals_mask"].tensor_shape.dim[1].size == 5
    finally:
        server.stop(0)
    for song, answer in zip(songs[:-1], answers[:-1]):
        assert isinstance(answer, dict), answer
        local = separator.separate_waveform(tf.constant(song))
        for name in ("vocals", "accompaniment"):
            np.testing.assert_allclose(answer[name], local[name].numpy(), atol=1e-5)
    assert answers[-1].code() == grpc.StatusCode.INVALID_ARGUMENT and "non-finite" in answers[-1].details()
    assert max(queue.batch_sizes) >= 2, queue.batch_sizes            # some requests did share a call
    assert sum(size * count for size, count in queue.batch_sizes.items()) == len(songs)

"""TF Serving over gRPC: serving.server as a subprocess on 127.0.0.1, the client library and CLI."""
import os
import re
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
from tensorflow.core.framework.tensor_pb2 import TensorProto
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.client import main as client_main
from serving.client import SeparationClient, ServingError
from serving.server import models_from_config_file
from svsgan_tf import cli
from svsgan_tf.errors import AudioError
from svsgan_tf.export.savedmodel import SIGNATURES, export_model
from svsgan_tf.separation.separator import Separator
from svsgan_tf.data.synthetic import make_track
from tests.conftest import ROOT

MODEL = "tiny"
MAX_MESSAGE_MB = 1.0
# the module's server: small limits and chunks, so that requests below MAX_MESSAGE_MB exceed them
MAX_CHANNELS = 4
MAX_SAMPLES = 240_000                  # 30 s at 8 kHz; 1 x 240_001 float32 still fit in MAX_MESSAGE_MB
CHUNK_SECONDS = 1.5
LIMIT_FLAGS = ("--max_channels", MAX_CHANNELS, "--max_samples", MAX_SAMPLES, "--chunk_seconds", CHUNK_SECONDS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(module, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


class Server:
    """A `python -m serving.server` subprocess and stubs on its address."""

    def __init__(self, base, log_path, flags=()):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", "--port", str(self.port), "--model_name", MODEL,
             "--model_base_path", str(base), "--max_message_mb", str(MAX_MESSAGE_MB), *map(str, flags)],
            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=self.log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(self.address, options=[("grpc.max_receive_message_length", -1)])
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def status(self, timeout=5.0):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        return self.models.GetModelStatus(request, timeout=timeout)

    def wait_until_serving(self, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{open(self.log_path).read()}")
            try:
                self.status(timeout=1.0)
                return
            except grpc.RpcError:
                time.sleep(0.3)
        pytest.fail(f"the server did not answer within {timeout} s:\n{open(self.log_path).read()}")

    def stop(self):
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def export_base(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / MODEL
    export_model(tiny_model_dir, str(base))
    return base


@pytest.fixture(scope="module", autouse=True)
def booting_server(export_base, tmp_path_factory):
    """The server process, started before the first test so that it loads while the tests that do not
    need it run; always terminated at the end of the module."""
    server = Server(export_base, tmp_path_factory.mktemp("server") / "server.log", LIMIT_FLAGS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(booting_server):
    booting_server.wait_until_serving()
    return booting_server


@pytest.fixture(scope="module")
def separator(tiny_model_dir):
    return Separator.from_directory(tiny_model_dir)


@pytest.fixture(scope="module")
def client(server):
    with SeparationClient(server.address, MODEL, timeout=30) as client:
        yield client


def predict_request(inputs, signature="", model=MODEL, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(value if isinstance(value, TensorProto) else tf.make_tensor_proto(value))
    return request


# tests without the server first: it loads meanwhile
def test_models_config_names_the_docker_mount():
    assert models_from_config_file(os.path.join(ROOT, "serving", "models.config")) == [("svsgan", "/models/svsgan")]


def test_an_export_without_a_chunk_context_is_separated_in_one_piece():
    from serving.server import Signature, waveform_chunk_layout

    older_info = Signature("model_info", None, {}, dict.fromkeys(["sample_rate", "n_fft", "hop_length", "min_samples"]))
    waveform = Signature("serving_default", None, {}, {})
    assert waveform_chunk_layout({"serving_default": waveform, "model_info": older_info}, 30.0) is None
    assert waveform_chunk_layout({"serving_default": waveform}, 30.0) is None


def test_server_refuses_a_missing_base_path_in_one_line(tmp_path):
    result = run("serving.server", "--model_name", MODEL, "--model_base_path", tmp_path / "nothing")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'nothing'}: model base path not found"


def test_client_cli_server_down_is_one_line(tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 1)), 8000)
    address = f"127.0.0.1:{free_port()}"
    argv = ["--server", address, "--model_name", MODEL, str(song), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_code:
        cli.run(lambda: client_main(argv))                   # what `python -m serving.client` runs
    assert exit_code.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {address}: server unavailable, is it running?"), errors


def test_status_and_metadata(server):
    status = server.status()
    assert [(s.version, s.state) for s in status.model_version_status] == \
        [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = server.predict.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    assert set(defs) == set(SIGNATURES)
    assert set(defs["serving_default"].inputs) == {"waveform"}
    assert set(defs["serving_default"].outputs) == {"vocals", "accompaniment"}
    assert [d.size for d in defs["separate_magnitude"].inputs["magnitude"].tensor_shape.dim] == [-1, -1, 129]


def test_listens_on_loopback_only(server):
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == server.port:          # 0A: LISTEN
                listening.append(address)
    if not listening:
        pytest.skip("/proc/net/tcp does not show the server's socket")
    # 127.0.0.1, as IPv4 or as IPv4-mapped IPv6 (::ffff:127.0.0.1); never 0.0.0.0 or ::
    assert set(listening) <= {"0100007F", "0000000000000000FFFF00000100007F"}, listening


def test_client_returns_the_local_separation(client, separator):
    stereo = make_track(7, duration=2.0, sample_rate=8000).mixture                  # (nb_samples, nb_channels)
    mono = make_track(8, duration=1.0, sample_rate=22050, nb_channels=1).mixture[:, 0]
    info = client.info()
    assert (info.sample_rate, info.n_fft, info.hop_length, info.version) == (8000, 256, 128, 1)
    for waveform, rate in ((stereo, 8000), (mono, 22050)):
        sent = client.requests_sent
        remote, local = client.separate(waveform, rate, source="clip"), separator.separate(waveform, rate)
        assert client.requests_sent == sent + 1
        for name in ("vocals", "accompaniment"):
            assert remote[name].shape == waveform.shape
            assert np.abs(remote[name] - local[name]).max() < 1e-5


def test_a_long_file_in_several_requests_equals_one_shot(server, separator):
    track = make_track(9, duration=8.0, sample_rate=8000).mixture                   # 512 KB of float32
    with SeparationClient(server.address, MODEL, max_request_mb=0.1, crossfade_ms=50) as chunked:
        remote = chunked.separate(track, 8000, source="long")
        plan = chunked.chunk_layout(2).plan(track.shape[0])
        assert chunked.requests_sent == len(plan) + 1 >= 5                           # + 1: model_info
    local = separator.separate(track, 8000)
    seams = np.zeros(track.shape[0], bool)
    for (start, _), (_, stop) in zip(plan[1:], plan[:-1]):
        seams[start:stop] = True                                                     # the overlaps
    for name in ("vocals", "accompaniment"):
        error = np.abs(remote[name] - local[name]).max(axis=1)
        assert error[~seams].max() < 1e-5 and error[seams].max() < 1e-3


def test_chunks_equal_one_shot_with_a_finer_hop_and_a_smoothed_mask(tiny_model_dir, tmp_path):
    """The chunk margin covers the mask smoothing: joined chunks equal one-shot separation at the seams too."""
    from svsgan_tf.models.model_io import load_generator, save_model

    config, generator = load_generator(tiny_model_dir)
    config = config.replace(**{"separation.hop_length": 64, "separation.mask_smoothing": 9,
                               "separation.mask_power": 0.8})
    folder = str(tmp_path / "smoothed")
    save_model(folder, config, generator)
    base = tmp_path / "models" / MODEL
    export_model(folder, str(base))
    smoothed = Server(base, tmp_path / "server.log")
    try:
        smoothed.wait_until_serving()
        track = make_track(9, duration=8.0, sample_rate=8000).mixture
        with SeparationClient(smoothed.address, MODEL, max_request_mb=0.1, crossfade_ms=5) as chunked:
            remote = chunked.separate(track, 8000, source="long")
            assert chunked.info().hop_length == 64
            assert chunked.requests_sent >= 5
    finally:
        smoothed.stop()
    local = Separator(config, generator).separate(track, 8000)
    for name in ("vocals", "accompaniment"):
        assert np.abs(remote[name] - local[name]).max() < 1e-5          # 5e-4 with the margin of n_fft alone


def alive(server):
    request = predict_request({"waveform": np.zeros((1, 1000), np.float32)})
    assert set(server.predict.Predict(request, timeout=30).outputs) == {"vocals", "accompaniment"}


def corrupt_content():
    proto = tf.make_tensor_proto(np.zeros((2, 1000), np.float32))
    proto.tensor_content = proto.tensor_content[:100]
    return proto


def declared_without_data(*shape):
    """A float32 tensor declaring `shape` and carrying no values: 20-odd bytes on the wire."""
    proto = TensorProto(dtype=tf.float32.as_datatype_enum)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def one_float_val(*shape):
    """A float32 tensor declaring `shape` with one value in float_val (tf.make_ndarray repeats it)."""
    return tf.make_tensor_proto(0.5, tf.float32, shape)


def content_of(nb_values, *shape):
    proto = tf.make_tensor_proto(np.zeros(nb_values, np.float32))
    del proto.tensor_shape.dim[:]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


good = np.zeros((2, 1000), np.float32)


@pytest.mark.parametrize("request_args, code, fragment", [
    (({"waveform": good.astype(np.float64)},), "INVALID_ARGUMENT", "expected dtype float32, got float64"),
    (({"waveform": good[0]},), "INVALID_ARGUMENT", "expected shape (?, ?), got (1000,)"),
    (({"waveform": good[None]},), "INVALID_ARGUMENT", "expected shape (?, ?), got (1, 2, 1000)"),
    (({"magnitude": np.zeros((1, 4, 100), np.float32)}, "separate_magnitude"), "INVALID_ARGUMENT",
     "expected shape (?, ?, 129), got (1, 4, 100)"),
    (({},), "INVALID_ARGUMENT", "missing: {waveform}"),
    (({"waveform": good, "tempo": good},), "INVALID_ARGUMENT", "extra: {tempo}"),
    (({"waveform": corrupt_content()},), "INVALID_ARGUMENT",
     "declared shape (2, 1000), 2000 float32 values, but the tensor carries 100 bytes of tensor_content"),
    (({"waveform": content_of(2001, 2, 1000)},), "INVALID_ARGUMENT", "carries 8004 bytes of tensor_content"),
    # declared shapes without data: accepted, they would be separated as zeros of that size
    (({"waveform": declared_without_data(2, 8_000_000)},), "INVALID_ARGUMENT",
     "input 'waveform' of signature 'serving_default': declared shape (2, 8000000), 16000000 float32 values, "
     "but the tensor carries no values"),
    (({"waveform": declared_without_data(MAX_CHANNELS, MAX_SAMPLES)},), "INVALID_ARGUMENT", "carries no values"),
    (({"waveform": declared_without_data(1, 10 ** 12)},), "INVALID_ARGUMENT", "carries no values"),
    (({"magnitude": declared_without_data(1, 20_000, 129)}, "separate_magnitude"), "INVALID_ARGUMENT",
     "input 'magnitude' of signature 'separate_magnitude': declared shape (1, 20000, 129)"),
    (({"waveform": one_float_val(2, 100_000)},), "INVALID_ARGUMENT", "carries 1 in float_val"),
    (({"waveform": good[:, :100]},), "INVALID_ARGUMENT", "too short: 100 samples"),
    (({"waveform": np.full((1, 1000), np.nan, np.float32)},), "INVALID_ARGUMENT", "non-finite"),
    (({"magnitude": -np.ones((1, 4, 129), np.float32)}, "separate_magnitude"), "INVALID_ARGUMENT", "negative"),
    (({"waveform": good}, "separate_vocals"), "NOT_FOUND", 'signature key "separate_vocals" not found'),
    (({"waveform": good}, "", "opera"), "NOT_FOUND", "Servable not found for request: Latest(opera)"),
    (({"waveform": good}, "", MODEL, 3), "NOT_FOUND", f"Specific({MODEL}, 3)"),
    (({"waveform": np.zeros((1, 300_000), np.float32)},), "RESOURCE_EXHAUSTED", "larger than max"),
    (({"waveform": np.zeros((MAX_CHANNELS + 1, 1000), np.float32)},), "RESOURCE_EXHAUSTED",
     f"{MAX_CHANNELS + 1} channels, more than this server's limit of {MAX_CHANNELS} (--max_channels)"),
    (({"waveform": np.zeros((1, MAX_SAMPLES + 1), np.float32)},), "RESOURCE_EXHAUSTED",
     f"{MAX_SAMPLES + 1} samples per channel, more than this server's limit of {MAX_SAMPLES} (--max_samples)"),
])
def test_bad_requests_get_their_status_and_the_server_keeps_serving(server, request_args, code, fragment):
    with pytest.raises(grpc.RpcError) as err:
        server.predict.Predict(predict_request(*request_args), timeout=30)
    assert err.value.code().name == code, err.value.details()
    assert fragment in err.value.details()
    alive(server)


def test_a_scalar_without_a_value_reads_as_zero(server):
    from tensorflow.core.framework.types_pb2 import DT_INT64

    response = server.predict.Predict(predict_request({"nb_samples": TensorProto(dtype=DT_INT64)}, "model_info"),
                                      timeout=10)
    assert int(tf.make_ndarray(response.outputs["nb_frames"])) == 1


def test_a_long_request_is_separated_in_chunks_by_the_server_and_equals_one_shot(server, separator):
    waveform = np.ascontiguousarray(make_track(11, duration=8.0, sample_rate=8000).mixture.T)    # (2, 64000)
    response = server.predict.Predict(predict_request({"waveform": waveform}), timeout=60)
    local = separator.separate_chunk(waveform)                  # one call on the whole waveform
    for name in ("vocals", "accompaniment"):
        remote = tf.make_ndarray(response.outputs[name])
        assert remote.shape == waveform.shape
        assert np.abs(remote - local[name]).max() < 1e-5
    logged = re.findall(r"serving_default: 2 channels x 64000 samples separated in (\d+) chunks of at most (\d+)",
                        open(server.log_path).read())
    assert logged, "the server did not separate the request in chunks"
    nb_chunks, chunk = map(int, logged[-1])
    assert nb_chunks >= 5 and chunk < int(2 * CHUNK_SECONDS * 8000)


def test_bad_metadata_request(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("labels")
    with pytest.raises(grpc.RpcError) as err:
        server.predict.GetModelMetadata(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "labels" in err.value.details()


def test_client_errors_are_one_line(server, client):
    with SeparationClient(f"127.0.0.1:{free_port()}", MODEL, timeout=5) as down:
        with pytest.raises(ServingError, match="server unavailable, is it running"):
            down.info()
    with SeparationClient(server.address, "opera") as unknown:
        with pytest.raises(ServingError, match="model 'opera': not found"):
            unknown.info()
    with pytest.raises(ServingError, match="not found: Serving signature key"):
        client.predict("separate_vocals", {"waveform": good})
    with SeparationClient(server.address, MODEL) as hurried:
        hurried.info()
        hurried.timeout = 0.001                      # far less than 25 s of audio takes
        with pytest.raises(ServingError, match="no answer within the 0.001 s deadline"):
            hurried.separate(np.zeros((200_000, 1), np.float32), 8000)
    with SeparationClient(server.address, MODEL, max_request_mb=2.0) as greedy:
        with pytest.raises(ServingError, match="too large for the server"):
            greedy.separate(np.zeros((300_000, 1), np.float32), 8000)
    with pytest.raises(AudioError, match="clip.wav: audio is too short"):
        client.separate(np.zeros((100, 2), np.float32), 8000, source="clip.wav")


def test_client_cli_writes_the_stems_and_reports_bad_files(server, separator, tmp_path):
    song = tmp_path / "song.wav"
    mixture = make_track(10, duration=1.5, sample_rate=8000).mixture
    sf.write(song, mixture, 8000, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros((50, 2)), 8000)
    out = tmp_path / "out"
    result = run("serving.client", "--server", server.address, "--model_name", MODEL, song, short, "--out", out)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(short) in errors[0] and "too short" in errors[0], result.stderr
    assert "separated 1 of 2" in result.stdout
    local = separator.separate(mixture, 8000)
    for name in ("vocals", "accompaniment"):
        stem, rate = sf.read(out / "song" / f"{name}.wav", dtype="float32")
        assert rate == 8000 and stem.shape == mixture.shape
        assert np.abs(stem - local[name]).max() < 1e-4                          # 16-bit WAV
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_an_export_without_a_chunk_context_is_refused_by_the_client_in_one_line():
    from serving.client import ModelInfo

    client = SeparationClient("127.0.0.1:1", MODEL)          # no call is made: info is set below
    client._info = ModelInfo(MODEL, 1, 8000, 256, 128, 256, "{}", ("serving_default",))
    try:
        with pytest.raises(ServingError, match="export it again"):
            client.chunk_layout(2)
    finally:
        client.close()

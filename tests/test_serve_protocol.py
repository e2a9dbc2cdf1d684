"""The daemon's protocol, driven on a real `sbexportd serve` process: lifecycle,
capabilities, auth, errors and their codes, malformed frames, executeCommand, the
three transports, and protocol.md covering exactly the methods served."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from rpc_client import Client, Daemon, RpcError, encode, frame, wait_until

MLP = FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip"
OBS = [[0.1, -0.2, 0.03, 0.4]]


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--max-message-bytes", "65536")
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def still_answers(daemon: Daemon) -> None:
    """A fresh connection is served: the daemon survived whatever the test did."""
    assert daemon.alive()
    c = daemon.client()
    assert c.request("sbexport/status")["pid"] == daemon.proc.pid
    c.close()


# -- lifecycle --------------------------------------------------------------------------
def test_initialize_advertises_targets_algorithms_encodings_and_commands(daemon):
    c = daemon.client(initialize=False)
    result = c.initialize()
    caps = result["capabilities"]
    sbx = caps["experimental"]["sbexportd"]
    assert set(sbx) == {"version", "protocolVersion", "targets", "algorithms", "backends", "encodings"}
    assert {"onnx", "savedmodel", "portable", "params"} <= set(sbx["targets"])
    assert "ppo2" in sbx["algorithms"] and "dqn" in sbx["algorithms"]
    assert sbx["backends"] == ["numpy", "tensorflow", "torch", "onnxruntime"]
    assert sbx["encodings"] == ["list", "base64", "msgpack"]
    from sbexportd.serve.methods import METHODS
    assert sorted(caps["executeCommandProvider"]["commands"]) == sorted(m.replace("/", ".") for m in METHODS)
    assert result["serverInfo"]["name"] == "sbexportd"
    c.close()


def test_requests_before_initialize_are_refused(daemon):
    c = daemon.client(initialize=False)
    with pytest.raises(RpcError) as e:
        c.request("sbexport/status")
    assert e.value.code == -32002 and e.value.kind == "not_initialized" and e.value.data["hint"]
    c.initialize()
    assert c.request("sbexport/status")["version"]
    with pytest.raises(RpcError) as e:
        c.initialize()
    assert e.value.code == -32600 and e.value.kind == "already_initialized"
    c.close()


def test_shutdown_and_exit_end_one_tcp_connection_not_the_daemon(daemon):
    c = daemon.client()
    assert c.request("shutdown") is None
    with pytest.raises(RpcError) as e:
        c.request("sbexport/status")
    assert e.value.kind == "shutting_down"
    c.notify("exit")
    with pytest.raises((ConnectionError, OSError)):
        c.receive()
    still_answers(daemon)


def test_token_is_required_when_configured():
    d = Daemon("--token", "s3cret")
    try:
        for token in (None, "wrong"):
            c = d.client(initialize=False)
            with pytest.raises(RpcError) as e:
                c.initialize(token)
            assert e.value.code == -33020 and e.value.kind == "unauthorized"
            with pytest.raises(RpcError) as e:  # still not initialized
                c.request("sbexport/status")
            assert e.value.code == -32002
            c.close()
        c = d.client(token="s3cret")
        assert c.request("sbexport/status")["requests"]["served"] >= 4
        c.close()
    finally:
        d.stop()
    d = Daemon(env={"SBEXPORTD_TOKEN": "from-env"})  # the environment variable works too
    try:
        with pytest.raises(RpcError):
            d.client()
        d.client(token="from-env").close()
    finally:
        d.stop()


# -- errors --------------------------------------------------------------------------------
def test_errors_have_codes_kinds_files_and_hints(client, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a model at all")
    cases = [
        ("nope/method", {}, -32601, "method_not_found"),
        ("sbexport/open", {}, -32602, "invalid_params"),
        ("sbexport/open", [str(MLP)], -32602, "invalid_params"),
        ("sbexport/open", {"path": 42}, -32602, "invalid_params"),
        ("sbexport/open", {"path": str(tmp_path / "missing.zip")}, -33001, "file_not_found"),
        ("sbexport/open", {"path": str(junk)}, -33002, "not_a_model_file"),
        ("sbexport/open", {"path": str(MLP), "algo": "ppo9"}, -32602, "invalid_params"),
        ("sbexport/open", {"path": str(MLP), "backends": ["jax"]}, -33006, "backend_unavailable"),
        ("sbexport/predict", {"modelId": "m-unknown", "obs": OBS}, -33004, "unknown_model"),
        ("sbexport/inspect", {"modelId": "m-unknown"}, -33004, "unknown_model"),
    ]
    for method, params, code, kind in cases:
        with pytest.raises(RpcError) as e:
            client.request(method, params)
        assert (e.value.code, e.value.kind) == (code, kind), (method, params, e.value)
        assert e.value.data["hint"] and "file" in e.value.data
    with pytest.raises(RpcError) as e:
        client.request("sbexport/open", {"path": str(junk)})
    assert e.value.data["file"] == str(junk)

    mid = client.request("sbexport/open", {"path": str(MLP)})["modelId"]
    bad = [({"obs": [[1, 2, 3]]}, -33005, "bad_observation"),
           ({"obs": [[1, 2], [3]]}, -33005, "bad_observation"),
           ({"obs": [["a", "b", "c", "d"]]}, -33005, "bad_observation"),
           ({"obs": {"dtype": "float32", "shape": [1, 4], "data": "AAAA"}}, -33005, "bad_observation"),
           ({"obs": {"dtype": "object", "shape": [1], "data": ""}}, -33005, "bad_observation"),
           ({"obs": OBS, "backend": "jax"}, -33006, "backend_unavailable"),
           ({"obs": OBS, "encoding": "xml"}, -32602, "invalid_params"),
           ({"obs": OBS, "outputs": ["q_values"]}, -32602, "unknown_output"),
           ({"obs": OBS, "deterministic": "yes"}, -32602, "invalid_params"),
           ({}, -32602, "invalid_params")]
    for extra, code, kind in bad:
        with pytest.raises(RpcError) as e:
            client.request("sbexport/predict", {"modelId": mid, **extra})
        assert (e.value.code, e.value.kind) == (code, kind), (extra, e.value)
    with pytest.raises(RpcError) as e:
        client.request("sbexport/export", {"modelId": mid, "to": "nonsense", "out": str(tmp_path / "x")})
    assert (e.value.code, e.value.kind) == (-33010, "target_unavailable")
    assert client.request("sbexport/predict", {"modelId": mid, "obs": OBS})["outputs"]["actions"] in ([0], [1], [2])


def test_numpy_work_imports_neither_tensorflow_nor_torch(daemon):
    """Heavy imports happen lazily: a daemon that only served NumPy predicts has not
    loaded TensorFlow or torch (their shared libraries are not mapped)."""
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
    c.request("sbexport/predict", {"modelId": mid, "obs": OBS})
    maps = Path(f"/proc/{daemon.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this platform")
    text = maps.read_text()
    assert "libtorch" not in text and "_pywrap_tensorflow" not in text and "libtensorflow" not in text
    c.close()


def test_executecommand_reaches_the_same_methods(client):
    opened = client.request("workspace/executeCommand", {"command": "sbexport.open", "arguments": [{"path": str(MLP)}]})
    direct = client.request("sbexport/open", {"path": str(MLP)})
    assert opened["modelId"] == direct["modelId"]
    a = client.request("workspace/executeCommand", {"command": "sbexport.predict",
                                                     "arguments": [{"modelId": direct["modelId"], "obs": OBS}]})
    assert a == client.request("sbexport/predict", {"modelId": direct["modelId"], "obs": OBS})
    assert client.request("workspace/executeCommand", {"command": "sbexport.targets"})["targets"]
    for args, kind in (([{}, {}], "invalid_params"), ([1], "invalid_params")):
        with pytest.raises(RpcError) as e:
            client.request("workspace/executeCommand", {"command": "sbexport.status", "arguments": args})
        assert e.value.code == -32602 and e.value.kind == kind
    with pytest.raises(RpcError) as e:
        client.request("workspace/executeCommand", {"command": "sbexport.nope"})
    assert e.value.code == -32602
    with pytest.raises(RpcError) as e:
        client.request("workspace/executeCommand", {"command": "sbexport.inspect", "arguments": [{"modelId": "m-x"}]})
    assert e.value.code == -33004


def test_status_reports_models_memory_cache_and_requests(daemon):
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
    c.request("sbexport/predict", {"modelId": mid, "obs": OBS})
    s = c.request("sbexport/status")
    assert s["uptimeSeconds"] > 0 and s["rssBytes"] > 10 << 20
    assert any(m["modelId"] == mid and m["open"] and "numpy" in m["backends"] for m in s["models"])
    assert s["cache"]["maxModels"] == 16 and s["cache"]["hits"] >= 1 and s["cache"]["misses"] >= 1
    assert s["requests"]["served"] >= 3 and s["requests"]["byMethod"]["sbexport/predict"] >= 1
    assert s["connections"]["open"] >= 1
    assert c.request("sbexport/close", {"modelId": mid})["closed"] is True
    c.close()


# -- malformed input ---------------------------------------------------------------------------
def raw_connection(daemon):
    c = Client.tcp(daemon.host, daemon.port, timeout=20)
    c.initialize()
    return c


@pytest.mark.parametrize("garbage, code", [
    (b"GARBAGE HEADER\r\n\r\n", -32700),                                 # no Content-Length
    (b"Content-Length: abc\r\n\r\n{}", -32700),                          # not a number
    (b"Content-Length: -5\r\n\r\n", -32700),
    (b"X" * 20000 + b"\r\n\r\n", -32700),                                # a header line too long
    (frame(b"{not json"), -32700),                                       # bad JSON
    (frame(b"\xff\xfe{}"), -32700),                                      # not UTF-8
    (frame(b"\xc1", b"application/msgpack"), -32700),                    # bad msgpack
    (frame(b"{}", b"text/plain"), -32700),                               # unsupported content type
    (frame(b"[]"), -32600),                                              # a batch
    (frame(b'"hello"'), -32600),
    (frame(b'{"id": 1, "method": "sbexport/status"}'), -32600),          # no jsonrpc
    (frame(b'{"jsonrpc": "2.0", "id": [1], "method": "x"}'), -32600),
    (frame(b'{"jsonrpc": "2.0", "id": 7, "method": 5}'), -32600),
    (frame(b'{"jsonrpc": "2.0", "id": 8, "method": "sbexport/status", "params": 3}'), -32600),
    (frame(b'{"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {"capabilities": 5}}'), -32602),
])
def test_malformed_input_is_answered_and_the_connection_goes_on(daemon, garbage, code):
    c = raw_connection(daemon)
    c.send_raw(garbage)
    msg = c.receive()
    assert msg["error"]["code"] == code, msg
    assert msg["error"]["data"]["kind"] and msg["error"]["data"]["hint"]
    if code == -32700:
        assert msg["id"] is None
    # resynchronized: the next well-formed request on the same connection is answered
    assert c.request("sbexport/status")["pid"] == daemon.proc.pid
    c.close()


def test_oversize_messages_are_refused_without_dropping_the_connection(daemon):
    c = raw_connection(daemon)
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sbexport/predict",
                      "params": {"modelId": "x", "obs": [[0.5] * 4] * 10000}}).encode()
    assert len(big) > 65536
    c.send_raw(frame(big))
    msg = c.receive()
    assert msg["id"] is None and msg["error"]["code"] == -33030
    assert msg["error"]["data"]["kind"] == "message_too_large"
    assert c.request("sbexport/status")["pid"]
    c.close()
    # a length far beyond anything, never sent: answered at once, then the client leaves
    c = raw_connection(daemon)
    c.send_raw(b"Content-Length: 999999999999\r\n\r\n" + b"x" * 1000)
    assert c.receive()["error"]["code"] == -33030
    c.close()
    still_answers(daemon)


def test_truncated_frames_and_vanishing_clients_leave_the_daemon_serving(daemon):
    s = socket.create_connection((daemon.host, daemon.port))
    s.sendall(b"Content-Length: 500\r\n\r\n{\"jsonrpc\": ")
    s.shutdown(socket.SHUT_WR)  # the body ends short: answered (id null), then closed
    data = s.recv(65536)
    assert b'"code":-32700' in data and b'"id":null' in data
    s.close()
    for junk in (b"Content-Len", b"\x00\x01\x02" * 1000, encode({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                                                  "params": {"processId": None, "capabilities": {}}},
                                                                 "json")[:30]):
        s = socket.create_connection((daemon.host, daemon.port))
        s.sendall(junk)
        s.close()
    still_answers(daemon)


def test_msgpack_and_json_messages_mix_on_one_connection(client):
    mid = client.request("sbexport/open", {"path": str(MLP)}, encoding="msgpack")["modelId"]
    assert client.last_content_type == "msgpack"
    j = client.request("sbexport/predict", {"modelId": mid, "obs": OBS})
    assert client.last_content_type == "json"
    m = client.request("sbexport/predict", {"modelId": mid, "obs": OBS}, encoding="msgpack")
    assert client.last_content_type == "msgpack"
    assert isinstance(m["outputs"]["probs"]["data"], bytes)  # raw bytes on msgpack, always
    import numpy as np

    from rpc_client import to_array
    for k in j["outputs"]:
        np.testing.assert_array_equal(np.asarray(j["outputs"][k], dtype=to_array(m["outputs"][k]).dtype),
                                      to_array(m["outputs"][k]))


# -- transports -------------------------------------------------------------------------------
def test_stdio_transport_full_lifecycle():
    d = Daemon(transport="stdio")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        out = c.request("sbexport/predict", {"modelId": mid, "obs": OBS}, encoding="msgpack")
        assert c.last_content_type == "msgpack" and out["outputs"]["actions"]["shape"] == [1]
        c.send_raw(b"Content-Length: zz\r\n\r\n{}")  # garbage on the only stream: answered, resynchronized
        assert c.receive()["error"]["code"] == -32700
        assert c.request("sbexport/status")["connections"]["open"] == 1
        assert c.request("shutdown") is None
        c.notify("exit")
        assert d.proc.wait(20) == 0
    finally:
        d.stop()
    d = Daemon(transport="stdio")
    try:
        c = d.client()
        c.notify("exit")  # exit without shutdown: code 1, as LSP says
        assert d.proc.wait(20) == 1
    finally:
        d.stop()
    d = Daemon(transport="stdio")
    try:
        d.client()
        d.proc.stdin.close()  # the client is gone
        assert d.proc.wait(20) == 0
    finally:
        d.stop()


def test_websocket_transport_json_and_msgpack():
    d = Daemon(transport="ws")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        j = c.request("sbexport/predict", {"modelId": mid, "obs": OBS, "encoding": "base64"})
        assert c.last_content_type == "json"
        m = c.request("sbexport/predict", {"modelId": mid, "obs": OBS}, encoding="msgpack")
        assert c.last_content_type == "msgpack"
        from rpc_client import to_array
        for k in j["outputs"]:
            assert (to_array(j["outputs"][k]) == to_array(m["outputs"][k])).all()
        c._ws.send(b"\xc1\xc1")  # a binary frame that is not msgpack: parse error, connection kept
        err = c.receive()
        assert err["id"] is None and err["error"]["code"] == -32700
        c._ws.send("{oops")
        assert c.receive()["error"]["code"] == -32700
        c2 = d.client()
        assert c2.request("sbexport/status")["connections"]["open"] == 2
        c.close()
        assert wait_until(lambda: c2.request("sbexport/status")["connections"]["open"] == 1, 10)
        c2.close()
        assert d.alive()
    finally:
        d.stop()


# -- protocol.md --------------------------------------------------------------------------------
def test_protocol_md_documents_exactly_the_methods_served():
    from sbexportd.serve.errors import HINTS
    from sbexportd.serve.methods import METHODS
    text = (ROOT / "protocol.md").read_text()
    documented = set(re.findall(r"^### `(sbexport/[a-z]+)`", text, re.M))
    assert documented == set(METHODS), (documented ^ set(METHODS))
    for name in METHODS:
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        for part in ("Params", "Result", "Errors", "```json"):
            assert part in section, (name, part)
        assert f"`{name.replace('/', '.')}`" in text  # its executeCommand name
    codes = {int(c) for c in re.findall(r"\| `(-\d{5})` \|", text)}
    from sbexportd.serve import errors
    assert {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)} <= codes
    for kind in HINTS:
        assert f"`{kind}`" in text, kind

"""Feedback end to end on a tiny model over real HTTP: ratings and corrections on chat, streamed and plain
completions; every mistake a JSON 4xx; `feedback export` to SFT, DPO and KTO rows; `/good`, `/bad`, `/fix` in
`tunesmith chat` (local and `--url`); PostgreSQL as the database; and a kill -9 of the server during a burst of
feedback loses no acknowledged row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from test_serve_api import KEY, OTHER_KEY, free_port, start

from tunesmith.feedback.store import FeedbackRecord, FeedbackStore, ResponseRecord, feedback
from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.serve.app import Limits, Served, create_app
from tunesmith.serve.engine import Engine
from tunesmith.serve.feedback_log import FeedbackLog
from tunesmith.serve.keys import KeyStore
from tunesmith.serve.prompts import chat_prompt_ids

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback")
    (folder / "keys.txt").write_text(f"alice:{KEY}\nbob:{OTHER_KEY}\n")
    model, tokenizer = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    engine = Engine(model, tokenizer, max_batch=4, max_queue=16, bf16=False)
    log = FeedbackLog(FeedbackStore(str(folder / "feedback.db")))
    served = Served("tiny", engine, context_window=256, created=0, version="sha256:test")
    url, uv, thread = start(create_app(served, KeyStore(folder / "keys.txt"), Limits(max_tokens=32), None, log))
    yield {"url": url, "db": folder / "feedback.db", "tokenizer": tokenizer, "folder": folder}
    uv.should_exit = True
    thread.join(10)
    engine.close()
    log.close()


def rate(server, key: str = KEY, **body) -> httpx.Response:
    return httpx.post(server["url"] + "/v1/feedback", json=body, headers={"Authorization": f"Bearer {key}"})


def test_feedback_on_every_kind_of_response_is_stored_with_what_was_served(server):
    api = openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)
    two = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, n=2, temperature=1.0, seed=3)
    stream = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, stream=True, temperature=0)
    streamed_id = {chunk.id for chunk in stream}
    plain = api.completions.create(model="tiny", prompt="2+2=", max_tokens=4, temperature=0)
    assert len(streamed_id) == 1
    acks = [
        rate(server, response_id=two.id, choice=0, rating=1),
        rate(server, response_id=two.id, choice=1, rating=-1, comment="wrong city"),
        rate(server, response_id=streamed_id.pop(), rating=-1, correction="Paris."),
        rate(server, response_id=plain.id, correction="4"),
    ]
    assert [a.status_code for a in acks] == [200] * 4, [a.text for a in acks]
    assert len({a.json()["id"] for a in acks}) == 4
    stored = FeedbackStore(str(server["db"])).response(two.id)
    assert stored.answers == [c.message.content for c in two.choices] and stored.n == 2
    assert stored.prompts == [MESSAGES] and stored.model_version == "sha256:test" and stored.key_name == "alice"
    assert stored.rendered == [server["tokenizer"].decode(chat_prompt_ids(server["tokenizer"], MESSAGES))]
    assert stored.sampling["temperature"] == 1.0 and stored.sampling["seed"] == 3


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        ({"response_id": "chatcmpl-unknown", "rating": 1}, KEY, 404),
        ({"response_id": "ANSWER", "rating": 1}, OTHER_KEY, 404),  # another key's response
        ({"response_id": "ANSWER", "choice": 3, "rating": 1}, KEY, 404),
        ({"response_id": "ANSWER"}, KEY, 400),  # says nothing
        ({"response_id": "ANSWER", "rating": 2}, KEY, 400),
        ({"response_id": "ANSWER", "rating": 1, "stars": 5}, KEY, 400),
        ({"response_id": "ANSWER", "rating": 1}, "wrong-key", 401),
    ],
)
def test_wrong_feedback_is_a_json_4xx(server, body, key, status):
    api = openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)
    answer = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    body = {k: (answer.id if v == "ANSWER" else v) for k, v in body.items()}
    reply = rate(server, key, **body)
    assert reply.status_code == status and "message" in reply.json()["error"], reply.text


def export(db: Path | str, out: Path, format: str, *extra: str) -> subprocess.CompletedProcess:
    command = [TUNESMITH, "feedback", "export", "--db", str(db), "--out", str(out), "--format", format, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_export_writes_sft_dpo_and_kto_rows_and_checks_them_for_leakage(server, tmp_path):
    store = FeedbackStore(str(tmp_path / "f.db"))
    plain = ["The capital is Lyon.", "The capital is Paris."]
    store.record_response(ResponseRecord("a", "chat", "tiny", "v", None, "local", [MESSAGES], ["r"], {}, 2, plain,
                                         ["stop", "stop"]))  # fmt: skip
    store.add_feedback(FeedbackRecord("a", 0, -1, "The capital of France is Paris."))
    store.add_feedback(FeedbackRecord("a", 1, 1))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"prompt": MESSAGES[0]["content"], "completion": "The capital of France is Paris."}))
    found = {}
    for format, rows in (("sft", 1), ("dpo", 2), ("kto", 3)):
        done = export(tmp_path / "f.db", tmp_path / "out", format, "--eval", str(evals))
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "out" / "export_report.json").read_text())
        found[format] = [json.loads(line) for line in (tmp_path / "out" / f"{format}.jsonl").read_text().splitlines()]
        assert report["rows"] == len(found[format]) == rows and report["feedback_rows"] == 2
    leak = next(c for c in report["checks"] if c["against"] == str(evals))
    assert any("leak" in code or "exact" in code for code in leak["counts"]), leak  # the eval row was a correction
    assert {r["chosen"][0]["content"] for r in found["dpo"]} == {"The capital of France is Paris.", plain[1]}
    missing = export(tmp_path / "nothing.db", tmp_path / "out", "sft")
    assert missing.returncode != 0 and "no feedback database" in missing.stderr and "Traceback" not in missing.stderr


def test_chat_commands_rate_and_correct_the_last_answer(server, tiny_model_dir, tmp_path):
    script = "Hello\n/good\n/fix Hi there.\n/bad not like that\n/exit\n"
    command = [TUNESMITH, "chat", str(tiny_model_dir), "--feedback-db", str(tmp_path / "l.db"), "--max-new-tokens", "4"]
    local = subprocess.run(command, input=script, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0 and local.stderr.count("✓") == 3, local.stderr
    rated = [(f.rating, f.correction) for _, f in FeedbackStore(str(tmp_path / "l.db")).rated()]
    assert rated == [(1, None), (None, "Hi there."), (-1, None)]
    env = {**os.environ, "TUNESMITH_API_KEY": KEY}
    command = [TUNESMITH, "chat", "-", "--url", server["url"] + "/v1", "--max-new-tokens", "4"]
    remote = subprocess.run(command, input="Hello\n/bad\n/exit\n", capture_output=True, text=True, timeout=300, env=env)
    assert remote.returncode == 0 and "stored by the server" in remote.stderr, remote.stderr


def test_postgresql_holds_the_same_tables_and_exports(postgres_url, tmp_path):
    store = FeedbackStore(postgres_url)
    store.record_response(ResponseRecord("pg-1", "completion", "tiny", "v", None, "local", ["2+2="], ["2+2="], {},
                                         1, ["5"], ["stop"]))  # fmt: skip
    store.add_feedback(FeedbackRecord("pg-1", 0, -1, "4"))
    store.close()
    done = export(postgres_url, tmp_path / "out", "sft")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "sft.jsonl").read_text()) == {"prompt": "2+2=", "completion": "4"}


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_kill9_during_a_feedback_burst_loses_no_acknowledged_row(tiny_model_dir, tmp_path):
    port, db = free_port(), tmp_path / "burst.db"
    command = [TUNESMITH, "serve", str(tiny_model_dir), "--port", str(port), "--feedback-db", str(db)]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    _wait_up(url, proc)
    answer = httpx.post(url + "/v1/chat/completions", json={"model": str(tiny_model_dir), "messages": MESSAGES,
                                                             "max_tokens": 2}, timeout=60).json()  # fmt: skip
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def burst(worker: int) -> None:
        with httpx.Client(timeout=10) as http:
            for i in range(10_000):
                if stop.is_set():
                    return
                try:
                    reply = http.post(url + "/v1/feedback", json={"response_id": answer["id"], "rating": 1,
                                                                  "comment": f"{worker}-{i}"})  # fmt: skip
                except httpx.TransportError:
                    return
                if reply.status_code == 200:
                    with lock:
                        acknowledged.append(reply.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        for worker in range(8):
            pool.submit(burst, worker)
        deadline = time.monotonic() + 60
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        stop.set()
    assert len(acknowledged) >= 150
    store = FeedbackStore(str(db))
    with store.engine.connect() as connection:
        stored = {row.id for row in connection.execute(feedback.select())}
    assert set(acknowledged) <= stored, f"lost {len(set(acknowledged) - stored)} acknowledged rows"

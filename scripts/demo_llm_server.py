#!/usr/bin/env python3
"""A tiny OpenAI-compatible server answering from fixtures/demo/answers.py.

Used only to (re)build the demo's response cache (scripts/make-demo-cache.sh). It reads the
function name from the prompt's `Function name: X` line and the task from the prompt text.
Unknown prompts get HTTP 404 so a missing answer is noticed, not cached.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures" / "demo"))
import answers  # noqa: E402


def replies_for(prompt):
    name = next((l.split(":", 1)[1].strip() for l in prompt.splitlines() if l.startswith("Function name:")), None)
    if name is None:
        return None
    if "Write unit tests" in prompt:
        r = answers.GEN_TESTS.get(name)
        return [r] if r else None
    if "fails its unit tests" in prompt:
        for needle, replies in answers.FIX.get(name, []):
            if needle in prompt:
                return replies
        return None
    if "Improve the documentation" in prompt:
        r = answers.REFINE.get(name)
        return [r] if r else None
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        prompt = "\n".join(m.get("content", "") for m in body.get("messages", []))
        replies = replies_for(prompt)
        if not replies:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "no scripted answer"}}')
            sys.stderr.write("no answer for prompt:\n" + prompt[:400] + "\n")
            return
        n = int(body.get("n", 1))
        choices = [{"index": i, "message": {"role": "assistant", "content": replies[i % len(replies)]}, "finish_reason": "stop"} for i in range(n)]
        payload = json.dumps({"id": "demo", "object": "chat.completion", "choices": choices,
                              "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": sum(len(c["message"]["content"]) // 4 for c in choices)}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()

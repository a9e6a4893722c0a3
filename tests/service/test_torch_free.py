"""The API process validates and queues a body without importing torch (the worker imports it, not the API)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_the_api_validates_and_queues_without_torch(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.json").write_text('{"data": []}')
    script = textwrap.dedent(
        f"""
        import json, sys
        from fastapi.testclient import TestClient
        from kshot.service import ServiceSettings, create_app

        root = {str(tmp_path)!r}
        settings = ServiceSettings(
            database_url=f"sqlite:///{{root}}/a.db", queue_path=f"{{root}}/q.db", output_root=f"{{root}}/runs",
            allowed_roots=[f"{{root}}/data"],
        )
        data = {{"format": "review_json", "path": f"{{root}}/data/r.json"}}
        codes = []
        with TestClient(create_app(settings)) as client:
            for algorithm in ("anil", "learned_optimizer", "protonet", "maml"):
                body = {{"config": {{"data": data}}, "params": {{"algorithm": algorithm}}}}
                codes.append(client.post("/train", json=body).status_code)
            bad = {{"config": {{"data": data}}, "params": {{"algorithm": "learned_optimizer", "lopt_hidden": 0}}}}
            codes.append(client.post("/train", json=bad).status_code)
            codes.append(client.get("/attempts").status_code)
        print(json.dumps({{"codes": codes, "torch": "torch" in sys.modules, "hf": "transformers" in sys.modules}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [202, 202, 202, 202, 422, 200], result
    assert result == {**result, "torch": False, "hf": False}

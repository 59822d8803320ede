"""Drives a live resultd through the client openapi-python-client generates from
openapi/openapi.json (scripts/clients.sh puts it in target/clients/python).

Usage: program.py BASE_URL. Prints one line per step; exits non-zero on any surprise.
"""

import sys
import threading
import uuid

from resultd_client import Client
from resultd_client.api.results import get_result, patch_result, put_result
from resultd_client.api.state import get_state, increment_state_field
from resultd_client.api.values import get_result_value
from resultd_client.models import IncrementBody, IncrementResult, Problem, ResultBody, ResultInput, ResultState, StateBody, ValueHolderBody


def main(base: str) -> None:
    # Anonymous access: the server has no tokens, so the plain Client is enough.
    client = Client(base_url=base, raise_on_unexpected_status=True)
    rid = uuid.uuid4()

    created = put_result.sync_detailed(rid, client=client, body=ResultInput(name="invoices.render", state=ResultState.RUNNING))
    assert isinstance(created.parsed, ResultBody), created
    print(f"stored {created.status_code.value} {created.parsed.state}")

    waited: dict[str, object] = {}

    def wait() -> None:
        waited["response"] = get_result.sync_detailed(rid, client=client, wait=30)

    waiter = threading.Thread(target=wait)
    waiter.start()
    # Whether the wait is already held or starts after the write, it answers the done record.
    # openapi-python-client renders a request body with two media types, one of them any JSON
    # (`{}`), as `isinstance(body, Any)`, which Python rejects; so this one call goes through the
    # generated client's own httpx client, and its answer is decoded by the generated model.
    done = client.get_httpx_client().put(f"/results/{rid}/value", params={"state": "SUCCESS"}, json=42)
    assert done.status_code == 200, done.text
    print(f"completed {done.status_code} {ResultBody.from_dict(done.json()).state}")
    waiter.join(timeout=60)
    response = waited["response"]
    assert isinstance(response.parsed, ResultBody), response
    print(f"waited {response.status_code.value} {response.parsed.state} done={response.parsed.done}")

    value = get_result_value.sync_detailed(rid, client=client, accept_encoding="gzip")
    assert isinstance(value.parsed, ValueHolderBody), value
    print(f"value {value.headers.get('content-encoding', 'identity')} {value.parsed.value_type} {value.parsed.raw_value}")
    # A value over compression.min_bytes is stored and answered gzip-compressed.
    big = uuid.uuid4()
    put_result.sync_detailed(big, client=client, body=ResultInput(name="invoices.render"))
    stored = client.get_httpx_client().put(f"/results/{big}/value", params={"state": "SUCCESS"}, json=list(range(500)))
    assert stored.status_code == 200, stored.text
    value = get_result_value.sync_detailed(big, client=client, accept_encoding="gzip")
    assert isinstance(value.parsed, ValueHolderBody), value
    print(f"value {value.headers.get('content-encoding', 'identity')} {value.parsed.value_type} {len(value.parsed.raw_value)}")

    app, key = "clients", f"counters-{rid}"
    first = increment_state_field.sync_detailed(app, key, "hits", client=client, body=IncrementBody(by=2))
    second = increment_state_field.sync_detailed(app, key, "hits", client=client, body=IncrementBody(by=3))
    assert isinstance(first.parsed, IncrementResult) and isinstance(second.parsed, IncrementResult), (first, second)
    print(f"incremented {first.parsed.value} {second.parsed.value}")
    state = get_state.sync_detailed(app, key, client=client)
    assert isinstance(state.parsed, StateBody), state
    print(f"state {state.parsed.to_dict()}")

    missing = get_result.sync_detailed(uuid.uuid4(), client=client)
    assert isinstance(missing.parsed, Problem), missing
    print(f"problem {missing.parsed.status} {missing.parsed.code}")
    clash = patch_result.sync_detailed(rid, client=client, body=ResultInput(state=ResultState.FAILURE))
    assert isinstance(clash.parsed, Problem), clash
    print(f"problem {clash.parsed.status} {clash.parsed.code} current_state={clash.parsed.current_state}")


if __name__ == "__main__":
    main(sys.argv[1])

"""Dashboard speed (issue 15): each page's HTML time and a 90-day chart's draw time in Chromium.

Loads ``modelledger demo``'s data set (``load_demo``: 3 users, 10 models, 90 days; ``--scale``
multiplies its ~600,000 requests) into a fresh SQLite data directory (or a PostgreSQL schema
with ``--pg URL``), serves the real app with uvicorn in this process, signs alice in through the
sign-in form and then:

- requests each page ``--repeat`` times one after another over loopback and reports the median
  and the 90th percentile of the whole request (client included, so an upper bound of the
  server's time); goal: median <= 30 ms;
- opens alice's busiest model with the 90-day range in Debian's Chromium ``--draws`` times and
  reads the ``charts`` Performance API measure (``static/charts.js``: the three uPlot charts
  built and drawn); goal: median <= 200 ms.

    .venv/bin/python benchmarks/ui_bench.py --scale 1.0 --repeat 50 --draws 10

Not a test: run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.tokens import SCOPE_ADMIN, SCOPE_MODELS, issue_token  # noqa: E402
from config.settings import load_settings  # noqa: E402
from modelledger.bootstrap import build  # noqa: E402
from modelledger.demo import load_demo  # noqa: E402
from projections.usage import queries  # noqa: E402
from tests.ui.browser import SECRET, Server  # noqa: E402

GOAL_PAGE_MS, GOAL_CHART_MS = 30.0, 200.0


def _signed_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/ui/login")
    csrf = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None  # noqa: S101 - the page's own form
    answer = client.post("/ui/login", data={"token": token, "_csrf_token": csrf.group(1)})
    assert answer.status_code == 303, answer.text  # noqa: S101
    return client


def _time_page(client: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    client.get(path)  # warm: templates compiled, connections open
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)  # noqa: S101
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def _chart_draws(
    url: str, client: httpx.Client, path: str, draws: int, tz: str
) -> list[float]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    if TYPE_CHECKING:
        from playwright._impl._api_structures import SetCookieParam  # noqa: PLC0415

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox"])
        context = browser.new_context(timezone_id=tz,
                                      viewport={"width": 1280, "height": 900})
        cookies: list[SetCookieParam] = [
            {"name": name, "value": value, "url": f"{url}/ui/"}
            for name, value in client.cookies.items()
        ]
        context.add_cookies(cookies)
        page = context.new_page()
        found = []
        for _ in range(draws):
            page.goto(f"{url}{path}")
            page.locator("#charts[data-drawn=true]").wait_for()
            found.append(page.evaluate("performance.getEntriesByName('charts')[0].duration"))
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--pg", help="PostgreSQL URL (a fresh schema is made and dropped)")
    parser.add_argument("--tz", default="Europe/Berlin",
                        help="The browser's zone: day windows of a zone other than UTC are "
                        "merged from hourly rows, UTC days are read as stored")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    schema = f"ui_bench_{int(time.time())}"
    extra = {}
    if args.pg:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        extra = {"database_url": args.pg, "pg_schema": schema}
    settings = load_settings({}, data_dir=data_dir, jwt_secret=SECRET, **extra)
    container = build(settings)
    try:
        started = time.perf_counter()
        result = load_demo(container, days=args.days, scale=args.scale)
        print(f"demo loaded: {result.accepted:,} requests in "
              f"{time.perf_counter() - started:.1f} s ({settings.backend})")
        alice = next(u for u in result.users if u.subject == "alice")
        _, per_model = queries.owner_usage(container.store, alice.user_id)
        busiest = max(per_model, key=lambda item: item[2].requests)[0]
        server = Server(container).start()
        try:
            token = issue_token(SECRET, "alice", [SCOPE_MODELS, SCOPE_ADMIN])
            client = _signed_in(server.url, token)
            client.cookies.set("ml_tz", args.tz, path="/ui")
            pages = {
                "models": "/ui/", "model (30 d)": f"/ui/models/{busiest}",
                "model (90 d)": f"/ui/models/{busiest}?range=90d",
                "model (24 h, hourly)": f"/ui/models/{busiest}?range=24h",
                "keys": "/ui/keys", "usage": "/ui/usage", "operations": "/ui/operations",
                "sign-in form": "/ui/login",
            }
            print(f"\nbrowser zone {args.tz}")
            print(f"{'page':<22} {'median ms':>10} {'p90 ms':>8}  goal <= {GOAL_PAGE_MS:.0f}")
            for name, path in pages.items():
                median, p90 = _time_page(client, path, args.repeat)
                verdict = "ok" if median <= GOAL_PAGE_MS else "OVER"
                print(f"{name:<22} {median:>10.1f} {p90:>8.1f}  {verdict}")
            draws = _chart_draws(server.url, client, f"/ui/models/{busiest}?range=90d",
                                 args.draws, args.tz)
            median = statistics.median(draws)
            print(f"\n90-day charts drawn (3 uPlot charts, 91 daily buckets): median "
                  f"{median:.1f} ms, max {max(draws):.1f} ms over {len(draws)} loads; goal <= "
                  f"{GOAL_CHART_MS:.0f} ms: {'ok' if median <= GOAL_CHART_MS else 'OVER'}")
        finally:
            server.stop()
    finally:
        container.close()
        if args.pg:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()

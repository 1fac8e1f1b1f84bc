"""Benchmark: what ``load.skip_bad_scenes`` costs (the post-search probe of every asset).

Run as ``python bench/probe.py [--size 384]``. Builds (or reuses) a demo world of that size in
a temporary cache, serves it on loopback (rustac + range server, as a run does), searches every
scene and probes the assets a run reads (the 12 bands + SCL) with
:func:`lcgee.integrity.unreadable_assets`: open each COG over HTTP and read its first and last
full-resolution block. Reports the number of probes and the wall time (best of 3; the machine
is shared). Loopback has no network latency: on Planetary Computer expect each probe to cost a
few round trips instead. The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcgee import integrity, search  # noqa: E402 - after the sys.path line
from lcgee.demo.serve import DemoServer  # noqa: E402
from lcgee.demo.world import WorldSpec, build_world  # noqa: E402
from lcgee.params import S2_BANDS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        world = build_world(WorldSpec(seed=11, size=args.size), Path(cache), progress=False)
        with DemoServer(world.root) as srv:
            client = search.open_client(srv.stac_url)
            found = search.search_scenes(client, collection="sentinel-2-l2a",
                                         bbox=world.grid.lonlat_bbox,
                                         datetime="2021-04-01/2022-09-30")
            assets = [*S2_BANDS, "SCL"]
            times, bad = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                bad = integrity.unreadable_assets(found.items, assets, workers=args.workers)
                times.append(time.perf_counter() - t0)
    probes = len(found.items) * len(assets)
    result = {"size": args.size, "scenes": len(found.items), "probes": probes,
              "workers": args.workers, "seconds_best": round(min(times), 3),
              "ms_per_probe": round(1000 * min(times) / probes, 2), "unreadable": len(bad)}
    print(f"{probes} probes ({len(found.items)} scenes x {len(assets)} assets): "
          f"{min(times):.2f} s best of 3")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

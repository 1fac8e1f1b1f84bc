"""Peak memory of load + mask + composite for an AOI and for one with 4x its area.

Both runs use the full demo world (built on first use), served on loopback like a real run,
and the stage functions the notebooks call (odc-stac loading over HTTP, the s2cloudless +
shadow mask written per scene, the median composite with indices), computed with Dask's
threaded scheduler on 2 threads.
Each AOI runs in a fresh subprocess; its peak RSS is read from the kernel
(``ru_maxrss``). Memory should be bounded by chunk size, not by area: the 4x AOI must need
less than 1.5x the memory.

    python bench/scale.py [--small 768] [--chunk 512]

The last line is one JSON object: ``small_peak_mb``, ``large_peak_mb``, ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def pipeline(size: int, chunk: int, stac_url: str, root: str) -> dict:
    """Run the cloud-mask and composite stages on a size x size window of the demo grid."""
    import tempfile
    from pathlib import Path

    import dask

    from lcgee import features, masks, search
    from lcgee.demo.world import World
    from lcgee.params import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params" / "demo.yaml",
                         {"load.chunk": chunk, "clouds.source": "local"})  # auto, resolved
    world = World.open(Path(root))
    grid = world.grid.window(0, 0, size, size)
    client = search.open_client(stac_url)
    found = search.search_scenes(client, collection="sentinel-2-l2a", bbox=grid.lonlat_bbox,
                                 datetime=params.dates.interval)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2), \
            tempfile.TemporaryDirectory() as tmp:
        got = masks.scene_masks(found.items, grid, params.clouds, client=client, chunk=chunk)
        masks.write_masks(got, grid, Path(tmp), key="bench", progress=False)
        result = features.build_composite(found.items, found.table, grid, params,
                                          client=client, masks_dir=Path(tmp))
        features.write_outputs(result, grid, Path(tmp))
        finite = float(result.features.notnull().mean().compute())
    return {"size": size, "seconds": round(time.perf_counter() - t0, 2),
            "finite": finite}


def _child(args: argparse.Namespace) -> None:
    out = pipeline(args.size, args.chunk, args.stac_url, args.root)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=768, help="side of the small AOI (px)")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stac-url", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    from lcgee.demo.serve import DemoServer
    from lcgee.demo.world import build_world

    world = build_world()
    results = {}
    with DemoServer(world.root) as srv:
        for name, size in (("small", args.small), ("large", args.small * 2)):
            cmd = [sys.executable, __file__, "--child", "--size", str(size), "--chunk",
                   str(args.chunk), "--stac-url", srv.stac_url, "--root", str(world.root)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[name]
            print(f"{name:<6} {size} x {size} px ({size * size / 1e6:.2f} Mpx): "
                  f"{r['seconds']:6.1f} s, peak RSS {r['peak_mb']:7.1f} MB, "
                  f"valid composite pixels {r['finite']:.1%}")
    ratio = results["large"]["peak_mb"] / results["small"]["peak_mb"]
    print(f"4x the area needs {ratio:.2f}x the memory (requirement: < 1.5x)")
    print(json.dumps({"small_peak_mb": round(results["small"]["peak_mb"], 1),
                      "large_peak_mb": round(results["large"]["peak_mb"], 1),
                      "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()

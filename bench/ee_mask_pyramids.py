"""How much the cloud mask changes if Earth Engine reads coarse inputs from mean pyramids.

lcgee's local algorithm and the offline evaluator read the 10 m cloud probability and B8 by
nearest neighbour when the tutorial's graph asks for them at 20 m (morphology) and 100 m
(shadow projection). Earth Engine's guide "Scale" says a coarser read uses the pyramid level
"with the closest scale less than or equal to the scale specified", whose continuous values are
2x2 block means. This script evaluates the same mask graph (:mod:`lcgee.gee.cloudmask`, working
grids pinned to the demo grid) twice with :mod:`lcgee.gee.offline` on demo scenes: as lcgee
models it, and with ``pyramid_bands=("probability", "B8")`` (mean levels aligned to the grid's
corner, SCL sampled), and counts the pixels whose code differs. The pyramid model is lcgee's
reading of the guide, not the service: the figure is an estimate of the size of the open
difference, not a measurement of Earth Engine.

    python bench/ee_mask_pyramids.py [--size 512] [--scenes 6]

The last line is one JSON object: ``pixels``, ``differ``, ``differ_fraction`` and per code
the pixel counts of both models.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scenes", type=int, default=6)
    args = ap.parse_args()


    from lcgee import clouds, ee_stage, search
    from lcgee.demo.serve import DemoServer
    from lcgee.demo.world import build_world
    from lcgee.gee import cloudmask, offline, session
    from lcgee.scenes import gee_index

    world = build_world(progress=False)
    grid = world.grid.window(0, 0, args.size, args.size)
    session.init_offline()
    with DemoServer(world.root) as srv:
        client = search.open_client(srv.stac_url)
        items = search.search_scenes(client, collection="sentinel-2-l2a",
                                     bbox=grid.lonlat_bbox,
                                     datetime="2021-04-01/2022-09-30").items[:args.scenes]
        loader = ee_stage.stac_loader(client, items, grid, chunk=256)
        total = differ = 0
        counts = {"nearest": {}, "pyramid": {}}
        for item in items:
            key = gee_index(item)
            tutorial = clouds.CloudMaskParams.from_mapping(clouds.TUTORIAL)
            graph = json.loads(cloudmask.mask_codes(*cloudmask.scene_images(key), tutorial,
                                                    crs=grid).serialize())
            images, props = {}, {}
            for asset_id in sorted(offline.loaded_ids(graph)):
                images[asset_id], props[asset_id] = loader(asset_id)
            near = offline.evaluate_graph(graph, images=images, properties=props,
                                          grid=grid)[cloudmask.MASK_BAND]
            pyr = offline.evaluate_graph(graph, images=images, properties=props, grid=grid,
                                         pyramid_bands=("probability", "B8"))[cloudmask.MASK_BAND]
            total += near.size
            differ += int((near != pyr).sum())
            for name, arr in (("nearest", near), ("pyramid", pyr)):
                for code in (clouds.CLEAR, clouds.CLOUD, clouds.SHADOW, clouds.NODATA):
                    counts[name][int(code)] = counts[name].get(int(code), 0) + int(
                        (arr == code).sum())
            print(f"{key}: {int((near != pyr).sum()):,} of {near.size:,} px differ")
    print(json.dumps({"pixels": total, "differ": differ,
                      "differ_fraction": differ / total if total else float("nan"),
                      "codes_nearest": counts["nearest"], "codes_pyramid": counts["pyramid"],
                      "scenes": len(items), "size": args.size}))


if __name__ == "__main__":
    main()

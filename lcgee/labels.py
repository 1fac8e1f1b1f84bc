"""Land-cover labels: the ESA WorldCover class table (codes, names, official colours)."""

from __future__ import annotations

__all__ = ["WORLDCOVER", "worldcover_colormap"]

#: ESA WorldCover v200 classes: code -> (name, official colour).
WORLDCOVER: dict[int, tuple[str, str]] = {
    10: ("Tree cover", "#006400"),
    20: ("Shrubland", "#ffbb22"),
    30: ("Grassland", "#ffff4c"),
    40: ("Cropland", "#f096ff"),
    50: ("Built-up", "#fa0000"),
    60: ("Bare / sparse vegetation", "#b4b4b4"),
    70: ("Snow and ice", "#f0f0f0"),
    80: ("Permanent water bodies", "#0064c8"),
    90: ("Herbaceous wetland", "#0096a0"),
    95: ("Mangroves", "#00cf75"),
    100: ("Moss and lichen", "#fae6a0"),
}


def worldcover_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The class colours as a rasterio colormap (code -> RGBA), 0 transparent."""
    cmap = {0: (0, 0, 0, 0)}
    for code, (_, hex_colour) in WORLDCOVER.items():
        h = hex_colour.lstrip("#")
        cmap[code] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return cmap

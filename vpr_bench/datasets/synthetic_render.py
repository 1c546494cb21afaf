"""Procedural streets for the embedded ``synthetic`` dataset.

A street is a row of generated building facades on the plane y = 0 (x along the street, z up). A pinhole
camera on the other side of the street (y = -distance) looks at it; each pixel's ray is intersected with
the facade, the ground and the sky. Query views come from shifted positions and headings, with changed
illumination, fog/rain, noise, blur and occluders, so recognising a place needs invariance, not lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PX_PER_M = 8  # facade texture resolution
FACADE_HEIGHT_M = 32
MARGIN_M = 40  # texture beyond both street ends, so edge views still see facades

WALL_COLOURS = (
    np.array(
        [
            [150, 70, 55],
            [180, 95, 70],
            [200, 180, 150],
            [225, 215, 190],
            [120, 120, 125],
            [170, 170, 165],
            [90, 100, 120],
            [235, 235, 230],
            [110, 80, 60],
            [190, 150, 90],
            [140, 160, 150],
            [60, 60, 70],
        ],
        dtype=np.float32,
    )
    / 255.0
)


@dataclass(frozen=True)
class View:
    x: float  # position along the street (m)
    distance: float  # from the facade (m)
    height: float  # camera height (m)
    yaw: float  # radians, 0 = facing the facade, positive = turned towards +x
    pitch: float  # radians, positive = up


def make_facade(length_m: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 4) float32 RGBA texture of a whole street; alpha 0 where there is sky."""
    width = int((length_m + 2 * MARGIN_M) * PX_PER_M)
    height = FACADE_HEIGHT_M * PX_PER_M
    texture = np.zeros((height, width, 4), dtype=np.float32)
    x = 0
    while x < width:
        w = int(rng.uniform(7, 22) * PX_PER_M)
        if rng.random() < 0.12:  # an alley: nothing but sky and background
            x += int(rng.uniform(2, 5) * PX_PER_M)
            continue
        _draw_building(texture[:, x : x + w], rng)
        x += w
    return texture


def _draw_building(block: np.ndarray, rng: np.random.Generator) -> None:
    h_px, w_px = block.shape[:2]
    top = h_px - int(rng.uniform(8, FACADE_HEIGHT_M - 2) * PX_PER_M)  # row index of the roof line
    wall = WALL_COLOURS[rng.integers(len(WALL_COLOURS))] * rng.uniform(0.8, 1.15)
    rows = np.arange(h_px)[:, None]
    cols = np.arange(w_px)[None, :]
    grain = rng.normal(0, 0.04, size=(h_px, 1)) + rng.normal(0, 0.03, size=(1, w_px))
    body = np.clip(wall[None, None, :] + grain[..., None], 0, 1)
    if rng.random() < 0.4:  # brick or panel courses
        period = int(rng.integers(3, 7))
        body *= np.where((rows % period) == 0, 0.85, 1.0)[..., None]
    # windows: a grid of floors and bays, some lit, framed
    floor = rng.uniform(2.8, 3.8) * PX_PER_M
    bay = rng.uniform(2.0, 4.2) * PX_PER_M
    win_w, win_h = rng.uniform(0.35, 0.7) * bay, rng.uniform(0.35, 0.6) * floor
    offset = rng.uniform(0, bay)
    u = (cols + offset) % bay
    v = (h_px - 1 - rows) % floor
    in_window = (np.abs(u - bay / 2) < win_w / 2) & (np.abs(v - floor * 0.55) < win_h / 2)
    above_ground = (h_px - 1 - rows) > floor
    glass = np.array(rng.choice([[0.15, 0.2, 0.3], [0.3, 0.35, 0.4], [0.1, 0.1, 0.12]]), dtype=np.float32)
    lit = rng.random((int(h_px / floor) + 2, int(w_px / bay) + 2)) < 0.15
    lit_px = lit[((h_px - 1 - rows) // floor).astype(int), ((cols + offset) // bay).astype(int)]
    window_colour = np.where(lit_px[..., None], np.array([0.95, 0.85, 0.5]), glass)
    body = np.where((in_window & above_ground)[..., None], window_colour, body)
    # ground floor: shop front or door, awning, a sign
    ground = (h_px - 1 - rows) < floor
    if rng.random() < 0.6:
        shop = ground & ((h_px - 1 - rows) < floor * 0.75) & (cols > 0.1 * w_px) & (cols < 0.9 * w_px)
        body = np.where(shop[..., None], glass * 1.3, body)
        awning = rng.random(3).astype(np.float32)
        band = ground & ((h_px - 1 - rows) >= floor * 0.75) & ((h_px - 1 - rows) < floor * 0.95)
        stripes = ((cols // max(2, int(rng.integers(3, 8)))) % 2 == 0) if rng.random() < 0.5 else True
        body = np.where((band & stripes)[..., None], awning, body)
    else:
        door_x = rng.uniform(0.2, 0.8) * w_px
        door = ground & (np.abs(cols - door_x) < 0.6 * PX_PER_M) & ((h_px - 1 - rows) < 2.2 * PX_PER_M)
        body = np.where(door[..., None], wall * 0.35, body)
    if rng.random() < 0.5:
        sx, sy = rng.uniform(0.1, 0.6) * w_px, top + rng.uniform(0.1, 0.5) * (h_px - top)
        sign = (cols > sx) & (cols < sx + rng.uniform(2, 5) * PX_PER_M) & (rows > sy) & (rows < sy + PX_PER_M)
        body = np.where(sign[..., None], rng.random(3).astype(np.float32), body)
    cornice = (rows >= top) & (rows < top + rng.uniform(0.3, 1.0) * PX_PER_M)
    body = np.where(cornice[..., None], body * 0.7, body)
    block[top:, :, :3] = body[top:]
    block[top:, :, 3] = 1.0


def render(
    facade: np.ndarray, view: View, size: tuple[int, int], fov_deg: float = 90.0, supersample: int = 2
) -> np.ndarray:
    """(H, W, 3) float32 image of the street seen from ``view``; ``size`` is (W, H)."""
    width, height = size[0] * supersample, size[1] * supersample
    f = width / 2 / np.tan(np.radians(fov_deg) / 2)
    u = (np.arange(width) + 0.5 - width / 2) / f  # right
    v = (height / 2 - np.arange(height) - 0.5) / f + np.tan(view.pitch)  # up
    sin_y, cos_y = np.sin(view.yaw), np.cos(view.yaw)
    dir_x = sin_y + u * cos_y  # horizontal ray direction, per column
    dir_y = cos_y - u * sin_y  # towards the facade
    t = np.where(dir_y > 1e-3, view.distance / np.maximum(dir_y, 1e-3), np.inf)  # ray length to y = 0
    hit_x = view.x + t * dir_x
    z = view.height + t[None, :] * v[:, None]  # (H, W) height where the ray meets the facade plane
    col = np.clip(((hit_x + MARGIN_M) * PX_PER_M).astype(int), 0, facade.shape[1] - 1)
    row = np.clip((facade.shape[0] - 1 - z * PX_PER_M).astype(int), 0, facade.shape[0] - 1)
    texel = facade[row, col[None, :]]  # (H, W, 4)
    on_facade = (z >= 0) & (z < FACADE_HEIGHT_M) & (texel[..., 3] > 0) & np.isfinite(t)[None, :]
    # sky: a vertical gradient; ground: pavement, kerb and road, with dashes that move with x
    sky = np.broadcast_to(
        np.stack(
            [0.55 + 0.3 * np.clip(v, 0, 1), 0.7 + 0.2 * np.clip(v, 0, 1), np.full_like(v, 0.95)], axis=-1
        )[:, None, :],
        (height, width, 3),
    )
    t_ground = np.where(v < 0, view.height / np.maximum(-v, 1e-6), 1e6)[:, None]  # (H, 1); sky rows: far
    gx = view.x + t_ground * dir_x[None, :]
    gy = -view.distance + t_ground * dir_y[None, :]  # 0 at the facade, negative towards the camera
    pavement = gy > -4.0
    kerb = (gy <= -4.0) & (gy > -4.3)
    dash = (np.abs(gy + view.distance + 3.0) < 0.12) & ((gx % 6.0) < 3.0)
    shade = np.where(pavement, 0.62 + 0.05 * ((np.floor(gx) + np.floor(gy)) % 2), 0.33)
    shade = np.where(kerb, 0.8, np.where(dash, 0.9, shade))
    ground = np.repeat(shade[..., None], 3, axis=-1)
    is_ground = (v[:, None] < 0) & ~on_facade
    image = np.where(on_facade[..., None], texel[..., :3], np.where(is_ground[..., None], ground, sky))
    image = image.reshape(size[1], supersample, size[0], supersample, 3).mean(axis=(1, 3))
    return image.astype(np.float32)


def change_appearance(image: np.ndarray, rng: np.random.Generator, strength: float) -> Image.Image:
    """Illumination, shadow, fog, rain, occluders, blur and noise; ``strength`` 0 (none) … 1 (query)."""
    h, w = image.shape[:2]
    s = strength
    gain = rng.uniform(1 - 0.5 * s, 1 + 0.3 * s)
    tint = 1 + rng.uniform(-0.15, 0.15, size=3) * s
    gamma = np.exp(rng.uniform(-0.4, 0.4) * s)
    out = np.clip(image * gain * tint, 0, 1) ** gamma
    if rng.random() < 0.5 * s:  # a cast shadow across the view
        a, b = rng.uniform(-1, 1), rng.uniform(0, h)
        yy, xx = np.mgrid[0:h, 0:w]
        out = np.where((yy > a * xx + b)[..., None], out * rng.uniform(0.45, 0.75), out)
    if rng.random() < 0.4 * s:  # fog
        out = out * (1 - (fog := rng.uniform(0.15, 0.5))) + fog * 0.75
    pil = Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.poisson(2.0 * s + 0.3)):
        _occluder(draw, rng, w, h)
    if rng.random() < 0.3 * s:  # rain streaks
        for _ in range(int(rng.integers(20, 60))):
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            draw.line([(x0, y0), (x0 + 2, y0 + rng.uniform(4, 9))], fill=(200, 200, 210), width=1)
    radius = rng.uniform(0, 1.2 * s)
    if radius > 0.2:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    noisy = np.asarray(pil, dtype=np.float32) + rng.normal(0, 255 * 0.03 * s, size=(h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
    kind = rng.integers(3)
    x = rng.uniform(-0.1, 0.9) * w
    base = rng.uniform(0.75, 1.0) * h
    if kind == 0:  # a car
        cw, ch = rng.uniform(0.25, 0.5) * w, rng.uniform(0.12, 0.2) * h
        draw.rounded_rectangle([x, base - ch, x + cw, base], radius=int(ch / 4), fill=colour)
        draw.rectangle([x + cw * 0.2, base - ch * 1.6, x + cw * 0.75, base - ch], fill=colour)
        for wx in (x + cw * 0.2, x + cw * 0.8):
            draw.ellipse([wx - ch / 3, base - ch / 3, wx + ch / 3, base + ch / 3], fill=(20, 20, 20))
    elif kind == 1:  # a pedestrian
        ph = rng.uniform(0.2, 0.45) * h
        draw.rectangle([x, base - ph * 0.8, x + ph * 0.22, base], fill=colour)
        draw.ellipse([x, base - ph, x + ph * 0.22, base - ph * 0.78], fill=(200, 160, 130))
    else:  # a tree or a pole
        th = rng.uniform(0.4, 0.9) * h
        draw.rectangle([x, base - th, x + w * 0.02, base], fill=(80, 60, 40))
        if rng.random() < 0.7:
            r = rng.uniform(0.08, 0.18) * w
            draw.ellipse(
                [x - r, base - th - r, x + r, base - th + r], fill=(40, int(rng.integers(90, 150)), 40)
            )

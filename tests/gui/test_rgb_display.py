"""The panel shows a colour (rolling_shutter) reconstruction as one RGB picture.

Known answers: a pure red / green / blue input gives pixels of only that colour; the channel
choices of a colour video offer the RGB picture first, then each channel by name.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtGui import QColor  # noqa: E402

from nstm_acquire.gui.images import compose_pixmap, rgb_qimage  # noqa: E402
from nstm_acquire.gui.reconstruction import RGB_CHANNEL, ReconImage, ReconstructionView, channel_choices  # noqa: E402


def test_colour_video_offers_rgb_first():
    assert channel_choices("rolling_shutter", 3) == [("colour (RGB)", RGB_CHANNEL), ("red", 0), ("green", 1), ("blue", 2)]
    assert channel_choices("sim2d", 1) == [("density", 0)]


def test_rgb_pixels_keep_their_colour(qtbot):
    planes = np.zeros((3, 4, 6), np.uint8)
    planes[0, 1, 2] = 255  # a red pixel
    planes[2, 3, 5] = 128  # a half-blue pixel
    image = rgb_qimage(planes)
    assert QColor(image.pixel(2, 1)).getRgb()[:3] == (255, 0, 0)
    assert QColor(image.pixel(5, 3)).getRgb()[:3] == (0, 0, 128)
    with pytest.raises(ValueError, match=r"\(3, y, x\)"):
        rgb_qimage(planes[:2])
    scene = np.zeros((3, 8, 8))
    scene[1] = 1.0  # green everywhere
    pixmap, _ = compose_pixmap(scene, (0.0, 1.0), min_display_px=8)
    assert QColor(pixmap.toImage().pixel(4, 4)).getRgb()[:3] == (0, 255, 0)


def test_reconstruction_view_shows_the_rgb_picture(qtbot):
    view = ReconstructionView()
    qtbot.addWidget(view)
    view.begin("rolling_shutter", pixel_size_um=1.0, frame_width=8)
    scene = np.zeros((2, 3, 1, 8, 8), np.float32)
    scene[:, 0] = 1.0  # a red scene
    view.show_image(ReconImage(0, "nstm", scene, np.array([0.0, 0.1]), None, 1.0))
    assert view.channel_box.currentText() == "colour (RGB)"
    r, g, b = QColor(view.view.pixmap().toImage().pixel(10, 10)).getRgb()[:3]
    assert r > 200 and g == 0 and b == 0


"""napari plugin (npe2; manifest ``napari.yaml``): a reader for nstm-acquire stores and the
acquisition panel as a dock widget. Install with ``pip install "nstm-acquire[napari]"``; see
docs/napari.md. napari is imported only by the widget, and by napari itself.
"""

from nstm_acquire.napari.reader import get_reader, read_store

__all__ = ["get_reader", "read_store"]

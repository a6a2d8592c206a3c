"""robbook.plots: figure sizes, image grids, and the palette PNGs the book shows (what keeps its pages light)."""
import base64
import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from robbook.plots import COLUMN_IN, figure_bytes, figsize, show_images


def test_show_images_fits_the_column_and_rejects_bad_shapes():
    fig = show_images(torch.rand(20, 1, 28, 28), ncols=10)
    assert fig.get_figwidth() <= COLUMN_IN + 1e-9
    with pytest.raises(ValueError, match="channels"):
        show_images(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="ncols"):
        show_images(torch.rand(2, 1, 8, 8), ncols=0)
    with pytest.raises(ValueError, match="width"):
        figsize(0.5, width=1.5)


def test_palette_png_is_smaller_and_looks_the_same():
    fig = show_images(torch.rand(16, 1, 28, 28), ncols=8)
    full, pal = figure_bytes(fig, "png"), figure_bytes(fig, "png8")
    a = np.asarray(Image.open(io.BytesIO(full)).convert("RGB"), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(pal)).convert("RGB"), dtype=float)
    assert Image.open(io.BytesIO(pal)).mode == "P" and len(pal) < len(full)
    assert a.shape == b.shape and np.abs(a - b).mean() < 3.0      # mean error under 3 of 255 grey levels
    with pytest.raises(ValueError, match="fmt"):
        figure_bytes(fig, "gif")


@pytest.mark.parametrize("pyplot_first", [False, True], ids=["style-first", "pyplot-first"])
def test_book_pages_show_every_figure_as_a_palette_png(tmp_path, monkeypatch, pyplot_first):
    """Executed in a real kernel as the book does (hidden `book_style()` first cell): pyplot figures, a bare Figure
    from `show_images`, whether pyplot started before the style or after, all come out as palette PNGs."""
    nbformat = pytest.importorskip("nbformat")
    papermill = pytest.importorskip("papermill")
    first = "import matplotlib.pyplot as plt\n" if pyplot_first else ""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(first + "from robbook.plots import book_style\nbook_style();"),
                nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nimport numpy as np\n"
                                          "plt.imshow(np.random.rand(40, 40)); plt.title('grid');"),
                nbformat.v4.new_code_cell("fig, ax = plt.subplots(); ax.plot([1, 2, 3]);"),
                nbformat.v4.new_code_cell("import torch\nfrom robbook.plots import show_images\n"
                                          "show_images(torch.rand(8, 1, 28, 28))")]
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")   # as robbook.run's kernels
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    modes = [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).mode
             for c in nbformat.read(out, 4).cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert modes == ["P", "P", "P"], modes

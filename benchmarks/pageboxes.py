"""Page view boxes: how often the box qa draws for a PDF quote lies over the right text.

Method: PDFs generated with reportlab (tests/helpers/pdfs.py): single column, justified,
two columns, headings/lists/tables, and a copy turned 90 degrees. qa parses each with its own
parser (pypdf) as a build does; for every generated sentence wholly on one page, the page
is rendered by ``qa.pageview.render_page`` (pdfium), the sentence's offsets are mapped to
boxes (``align`` + ``span_boxes``), and the printed characters whose centres lie inside
the boxes (pdfium's geometry) are compared with the sentence, spaces and case aside: a hit
is an exact match. Also: lines drawn at known positions (fonts Helvetica/Times/Courier,
9-18 pt), intersection over union of qa's box with the drawn one.

Run: python benchmarks/pageboxes.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as common


def main() -> None:
    from tests.helpers import pdfs

    load_before = common.loadavg()
    rows, layouts = [], {}
    for name, make in pdfs.LAYOUTS.items():
        t0 = time.perf_counter()
        checks = pdfs.sentence_checks(make())
        seconds = time.perf_counter() - t0
        hits = sum(ok for ok, _, _ in checks)
        layouts[name] = {
            "sentences": len(checks),
            "exact": hits,
            "rate": round(hits / len(checks), 4),
            "min_similarity": round(min(r for _, r, _ in checks), 4),
            "misses": [s for ok, _, s in checks if not ok][:10],
            "seconds": round(seconds, 2),
        }
        rows.append([name, len(checks), hits, f"{hits / len(checks):.1%}", f"{seconds:.1f}"])
    ious = pdfs.known_line_ious()
    lines = {
        "lines": len(ious),
        "iou_at_least_0.5": sum(i >= 0.5 for i in ious),
        "iou_min": round(min(ious), 3),
        "iou_mean": round(sum(ious) / len(ious), 3),
    }
    print(common.table(["layout", "sentences", "box over the right text", "rate", "seconds"], rows))
    print(f"known lines: {lines}")
    path = common.save(
        "pageboxes",
        False,
        {"method": __doc__, "layouts": layouts, "known_lines": lines},
        load_before,
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()

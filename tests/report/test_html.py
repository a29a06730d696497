from html.parser import HTMLParser
from urllib.parse import unquote

from wsdal_wsi.report import read_summary, slide_files
from wsdal_wsi.report.html import index_html


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids, self.text = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])
        if a.get("id"):
            self.ids.add(a["id"])

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    p = Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_index_shows_every_slide_and_links_exist(out_dir):
    page = parse(out_dir / "index.html")
    text = " ".join(page.text)
    for key in ("alpha", "beta", "gamma"):
        s = read_summary(slide_files(out_dir, key).summary)
        assert s.slide.name in text
        assert key in page.ids
    assert "truncated file" in text  # the failed slide's reason
    assert "1 failed" in text
    for link in page.links:
        if link.startswith("#"):
            assert link[1:] in page.ids
        else:
            assert "/" not in link and ":" not in link  # relative, beside index.html
            assert (out_dir / unquote(link)).is_file(), link
    for name in ("alpha.report.png", "beta.report.png", "counts.csv", "counts.xlsx"):
        assert name in page.links
    assert "gamma.report.png" not in page.links


def test_html_escapes_names(out_dir):
    s = read_summary(slide_files(out_dir, "gamma").summary)
    import dataclasses

    evil = dataclasses.replace(s, reason="<script>alert(1)</script>")
    html = index_html([evil], out_dir=out_dir)
    assert "<script>" not in html and "&lt;script&gt;" in html

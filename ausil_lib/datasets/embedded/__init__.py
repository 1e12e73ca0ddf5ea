"""The embedded corpus: pinned source recordings and the transformed clips built from them."""

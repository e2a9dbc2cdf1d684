"""Language features over model-file references, for editors (docs/editors.md):
hover (the inspect summary as Markdown), document links, code lenses running the
sbexport.* commands, diagnostics, settings.

    references.py  finding and resolving references in a document's text
    state.py       per connection: settings and each open document's checked references
    features.py    the pygls feature functions (thin) and their registration
    markdown.py    hover text
    samples.py     the "Predict sample" observation
    settings.py    the `sbexportd` settings section
"""
from .features import register, wants_progress, with_created_progress

__all__ = ["register", "wants_progress", "with_created_progress"]

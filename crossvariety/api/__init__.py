"""The PyTerrier API (crossvariety.Bm25Index, BGEM3, ...): see crossvariety/__init__.py."""


def by_columns(model, frame):
    """What an encoder object does with a frame, as pyterrier-dr's do: score (query, text)
    pairs, encode queries, or encode documents, by the columns it is given."""
    columns = set(frame.columns)
    if "query" in columns and model.text_field in columns:
        return model.text_scorer()(frame)
    if "query" in columns:
        return model.query_encoder()(frame)
    if model.text_field in columns:
        return model.doc_encoder()(frame)
    raise ValueError(f"{type(model).__name__} encodes a query column, a {model.text_field} "
                     f"column or scores both; got {list(frame.columns)}")

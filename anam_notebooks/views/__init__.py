"""What a person sees: plotly figures, the lookup and explorer widgets, escaped HTML, colours
and redaction. Frames in, figures and widgets out."""

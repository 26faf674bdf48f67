"""Charts of the outcome operations' Parameters: a patient's trajectory, the programme, the
window evidence; PNG or SVG bytes, drawn with matplotlib's Agg backend."""

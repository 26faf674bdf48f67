"""The programme's figures: `$programme-report` (outcomes by instrument, window adherence) and
`$window-evidence` (outcomes by the offset of EMDR sessions after their dose)."""

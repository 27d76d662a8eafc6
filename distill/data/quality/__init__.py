"""Quality control and export: code extraction and checks, dedup, decontamination, and the
`datasets` folder."""

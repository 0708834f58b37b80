"""Self-contained HTML reports of a run (`tunesmith report`) and comparisons of runs (`tunesmith compare`)."""

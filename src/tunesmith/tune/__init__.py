"""Hyperparameter search on Optuna (`tunesmith tune`): the space (`space`), the study database and its workers
(`study`, `runner`), one trial as a training run (`trial`), what a trial scored (`measures`), the test-file guard
(`guard`), and what a study found (`results`, `page`). docs/tuning.md."""

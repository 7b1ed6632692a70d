"""python-classifier: a modelhost command module in Python, the twin of the Rust `sentiment`.

`initialize` registers a text classification model; when run, the module classifies each line of
stdin and prints `LABEL<TAB>SCORE<TAB>TEXT` per line (the score with four decimals, `-` for the
label when no label reaches the requirement's threshold); `cleanup` releases the model.

Settings (all optional; the default model is the usual SST-2 sentiment classifier):

    {"model": {"model_type": "classification",
               "name": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
               "threshold": 0.6},
     "lines_per_call": 64}

Usage:

    modelhost run --settings '{"model": {"model_type": "classification",
        "name": "modelhost-fixtures/categorium-bert-cls-en"}}' \\
        target/modules/python-classifier.wasm < lines.txt
"""

import sys

import modelhost
from modelhost import ModelRequirement

MODEL_ID = "classifier"

DEFAULTS = {
    "model": {
        "model_type": "classification",
        "name": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    },
    "lines_per_call": 64,
}


class Classifier(modelhost.Command):
    """Classifies stdin line by line with the model the settings name."""

    name = "python-classifier"

    def __init__(self, settings: dict) -> None:
        """Registers the model (at `initialize`)."""
        config = modelhost.read_settings(settings, DEFAULTS)
        modelhost.register_model(MODEL_ID, ModelRequirement.from_settings(config["model"]))
        self.lines_per_call = max(1, config["lines_per_call"])

    def run(self) -> None:
        """Prints `LABEL<TAB>SCORE<TAB>TEXT` for each line of stdin."""
        lines = list(modelhost.stdin_lines())
        for start in range(0, len(lines), self.lines_per_call):
            chunk = lines[start:start + self.lines_per_call]
            for text, result in zip(chunk, modelhost.classify(MODEL_ID, chunk).results):
                label = "-" if result.label is None else result.label
                sys.stdout.write(f"{label}\t{result.score:.4f}\t{text}\n")


Lifecycle, Run = modelhost.export_command(Classifier)

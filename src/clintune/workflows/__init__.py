"""One module per verb: the steps of train, evaluate, predict, export and baseline.

Each workflow wires the layers below it (data, model folder, inference,
training, evaluation, export and reports) into what the verb does;
``clintune.api`` re-exports the functions and the CLI calls them.
"""

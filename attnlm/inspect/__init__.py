"""Looking inside a model: the pipeline trace of one head, attention tables and graphs, heat-map pictures."""

"""Job code: the order pipeline, the engines and the arq worker that runs them."""

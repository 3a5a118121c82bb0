"""`attnlm explore`: watch attention work in the browser.

server.py serves static/ (plain HTML, JavaScript and SVG: no build step, works offline) and the JSON API in
endpoints.py, which reaches the model only through model_access.py. The model is loaded above this package
(attnlm.api.explore) and handed in, so the explorer uses the same Model as the Python API and the CLI.
"""

"""`attnlm explore`: watch attention work in the browser.

server.py serves static/ (plain HTML, JavaScript and SVG: no build step, works offline) and the JSON API in
endpoints.py, which reaches the model only through model_access.py.
"""

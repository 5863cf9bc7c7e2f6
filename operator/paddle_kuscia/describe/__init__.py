"""`paddle-kuscia describe`: one screen that explains a PaddleService, KusciaJob or KusciaDeployment.

`tree` builds what is shown from plain dicts and finds the first thing that is wrong (`advice` is the
troubleshooting table as data); `render` turns it into text or JSON; `read` fetches the objects with the
user's kubeconfig; `command` is the command line. Only `read` does I/O.
"""

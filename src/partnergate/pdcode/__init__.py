"""Partner Directory as code: a directory of files, a plan of changes, and where it applies.

Lives here: the file layout (FlashPipe's ``String.properties`` and ``Binary/`` plus our
YAML files for the other entity types), the comparison of what the files say with what a
Partner Directory holds, and the two places a plan applies: the local store (one
transaction) and any SAP-compatible ``/api/v1`` (``$batch`` change sets). Sits beside
``cli`` and ``web``: it uses ``store``, ``odata``, ``security`` and ``model``, and nothing
uses it but the command line and the UI.
"""

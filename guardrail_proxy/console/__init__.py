"""The review console: web pages over the audit store, served by the proxy to operators and reviewers only.

A reviewer filters decisions, opens one to see the content, the exact policy version and the classifier's
reasoning, and marks the verdict (correct, or the label it should have had); reviewed items download as a
policy-lab dataset; the overview plots each policy's traffic, error rate and agreement, and the shadow page
compares candidate policies with the enforced ones.

  access.py    who may see the console (the ops port and its Host, the ops key, its login cookie, same-origin
               POSTs). Pure.
  forms.py     query strings and posted forms -> typed filters and marks, with an error per field. Pure.
  store.py     one connection to the audit store, in a thread of its own, each question within a time limit.
  queries.py   decisions: a filtered page, one decision with its marks and shadow verdicts.
  glance.py    the windows, and the overview's per-policy series over one; shadow.py: enforced versus candidate.
  download.py  the export's JSONL file, built in the store's thread, capped for a browser.
  html.py      escaping and the page shell; page_*.py: one page each, pure functions of typed values.
  plots.py     inline SVG time series. assets.py: the stylesheet and the script, as constants.
  routes.py    the Starlette endpoints under /console.

Modules here may import the audit modules, the config and errors; nothing outside the console imports them,
except app.py, which mounts routes.py.
"""

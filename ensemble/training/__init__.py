"""Training and evaluation of the ensemble's learned parts: labelled manifests and the
converters of public sets (:mod:`.data`, :mod:`.davidson`), cached features (:mod:`.features`),
the trainable view (:mod:`.trainable`), training (:mod:`.train`), hyper-parameter search
(:mod:`.tune`), evaluation (:mod:`.evaluate`) and its HTML report (:mod:`.report`).

Scoring and serving never import this package.
"""

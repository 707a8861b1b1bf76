"""Challengers on live traffic: the sequential comparison of a challenger with the
champion, the trainer's live judge, and the label-free accuracy estimates both use."""

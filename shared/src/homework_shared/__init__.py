"""Homework event contracts and the code the homework services share."""

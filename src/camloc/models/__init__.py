"""Models: finding the (features, linear head) halves of classifiers, the model zoo, and GAP surgery."""

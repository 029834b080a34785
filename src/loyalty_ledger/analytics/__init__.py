"""Analytics: the CLV model behind the analyst views, their refresh, and the managers' report."""

"""The admin under /admin/ (protected), and a customer's log-in and home page (not protected)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.http import HttpRequest, HttpResponse
from django.urls import path


def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    name = user.get_username() if user.is_authenticated else "visitor"
    return HttpResponse(f"Hello, {name}.", content_type="text/plain")


SHOP = {"site_header": "Shop"}  # the admin's log-in template, titled for customers

urlpatterns = [
    path("admin/", admin.site.urls),
    # Customers log in here; they are nobody to the admin's second factor (require: [is_staff]).
    path("login/", LoginView.as_view(template_name="admin/login.html", extra_context=SHOP)),
    path("", home),
    *staticfiles_urlpatterns(),  # the admin's CSS while DEBUG is on (a real site serves it itself)
]

"""Finding the link in what people paste: share texts wrap it in titles, emoji and instructions.

7.43 复制打开抖音，看看【某某的作品】今天的晚霞 https://v.douyin.com/iAbCdEf/ a@b.cn 02/11 :9pm
【标题 - 作者 | 小红书 - 你的生活指南】 😆 AbCd 😆 http://xhslink.com/a/AbCdEf，复制本条信息，打开【小红书】App查看精彩内容！
"""

from __future__ import annotations

import re

from yarl import URL

# A URL runs until whitespace, a quote or angle bracket, or CJK punctuation (share texts follow the link
# with "，复制本条信息" and the like, with no space in between).
URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'，。！？、；：（）【】「」《》]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}"


def find_links(text: str) -> list[URL]:
    links = []
    for match in URL_IN_TEXT.finditer(text):
        try:
            url = URL(match.group(0).rstrip(TRAILING))
        except ValueError:
            continue
        if url.host:
            links.append(url)
    return links


def is_single_url(text: str) -> bool:
    return bool(URL_IN_TEXT.fullmatch(text))
